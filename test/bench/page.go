package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Row is one measured row of docs/performance.json: a nil figure does not apply to the row.
type Row struct {
	Section   string   `json:"section"` // direct, apiserver, offline, audit, memory
	Mode      string   `json:"mode"`
	P50ms     *float64 `json:"p50_ms"`
	P99ms     *float64 `json:"p99_ms"`
	PerSecond *float64 `json:"per_second"`
	RSSMiB    *float64 `json:"rss_mib"`
	Date      string   `json:"date"`
}

func num(v float64) *float64 { return &v }

// RowKey is the key a Target's Row names: section/mode, as in docs/performance.json.
func RowKey(section, mode string) string { return section + "/" + mode }

// DirectMode is a direct-load step's mode: server-rate (webhook-2000, floor-max,
// webhook-handoff-10000-2000 for the server with the handoff informer among that many pods).
func DirectMode(s DirectStep) string {
	server := s.Server
	var n int
	if _, err := fmt.Sscanf(server, "webhook --handoff, %d unrelated pods", &n); err == nil {
		server = fmt.Sprintf("webhook-handoff-%d", n)
	}
	return server + "-" + rateName(s.TargetRate)
}

// OfflineMode is mutate-N or kubectl-dry-run-client-N.
func OfflineMode(o Offline) string {
	if o.Tool == "kubectl" {
		return fmt.Sprintf("kubectl-dry-run-client-%d", o.Deployments)
	}
	return fmt.Sprintf("mutate-%d", o.Deployments)
}

// MemoryMode is handoff-N, N the unrelated pods.
func MemoryMode(m MemoryRow) string { return fmt.Sprintf("handoff-%d", m.UnrelatedPods) }

func (r *Report) date() string { return r.Started.UTC().Format("2006-01-02") }

// directSteps are section 2's steps and the loaded step of section 6 (the webhook with the
// handoff informer), which is a direct-load row too.
func (r *Report) directSteps() []DirectStep {
	steps := append([]DirectStep(nil), r.Direct...)
	for _, m := range r.Memory {
		if m.Load != nil {
			steps = append(steps, *m.Load)
		}
	}
	return steps
}

// Rows are the measured rows of docs/performance.json.
func (r *Report) Rows() []Row {
	d := r.date()
	var rows []Row
	for _, s := range r.directSteps() {
		rows = append(rows, Row{Section: "direct", Mode: DirectMode(s), P50ms: num(float64(s.P50us) / 1000), P99ms: num(float64(s.P99us) / 1000),
			PerSecond: num(s.Achieved), RSSMiB: num(s.PeakRSSMiB), Date: d})
	}
	for _, a := range r.API {
		if a.Pods == 0 {
			continue
		}
		rows = append(rows, Row{Section: "apiserver", Mode: a.Mode, P50ms: num(a.P50ms), P99ms: num(a.P99ms), PerSecond: num(a.PodsSec), Date: d})
	}
	for _, o := range r.Offline {
		row := Row{Section: "offline", Mode: OfflineMode(o), P50ms: num(o.WallMs), Date: d}
		if o.PeakRSSMiB > 0 {
			row.RSSMiB = num(o.PeakRSSMiB)
		}
		rows = append(rows, row)
	}
	if a := r.Audit; a != nil {
		for _, run := range a.Runs {
			rows = append(rows, Row{Section: "audit", Mode: "audit-" + run.Output, P50ms: num(run.WallMs), RSSMiB: num(run.PeakRSSMiB), Date: d})
		}
	}
	for _, m := range r.Memory {
		rows = append(rows, Row{Section: "memory", Mode: MemoryMode(m), RSSMiB: num(m.PeakRSSMiB), Date: d})
	}
	return rows
}

// targetCounts are the goals met and missed, and the checks of the measurement failed.
func (r *Report) targetCounts() (met, goals, checks int, missed, failed []string) {
	for _, t := range r.Targets {
		switch {
		case t.Check:
			checks++
			if !t.Met {
				failed = append(failed, t.Name)
			}
		default:
			goals++
			if t.Met {
				met++
			} else {
				missed = append(missed, t.Name+" ("+t.Measured+")")
			}
		}
	}
	return
}

// Summary is the page's one summary line, which the README quotes.
func (r *Report) Summary() string {
	met, goals, checks, missed, failed := r.targetCounts()
	var b strings.Builder
	fmt.Fprintf(&b, "`make bench` on %s (%d cores, load average %s at start, %s at end): %d of %d targets met",
		r.date(), r.Machine.NProc, first(r.Machine.LoadAvg), first(r.LoadAvgEnd), met, goals)
	if len(missed) > 0 {
		fmt.Fprintf(&b, "; missed: %s", strings.Join(missed, "; "))
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "; NOT A VALID MEASUREMENT, %d of %d checks failed: %s", len(failed), checks, strings.Join(failed, "; "))
	} else {
		fmt.Fprintf(&b, "; all %d checks of the measurement passed (no floor above what it bounds)", checks)
	}
	return b.String() + "."
}

func first(loadavg string) string {
	f, _, _ := strings.Cut(loadavg, " ")
	return f
}

func result(t Target) string {
	switch {
	case t.Check && t.Met:
		return "OK"
	case t.Check:
		return "**FAILED: not a valid measurement**"
	case t.Met:
		return "met"
	default:
		return "**MISSED**"
	}
}

// rowTargets are the targets shown beside row key, as "goal: measured, result" lines.
func (r *Report) rowTargets(key string) (goal, res string) {
	var gs, rs []string
	for _, t := range r.Targets {
		if t.Row != key {
			continue
		}
		gs = append(gs, t.Name+" "+t.Goal)
		rs = append(rs, t.Measured+": "+result(t))
	}
	if len(gs) == 0 {
		return "—", "—"
	}
	return strings.Join(gs, "<br>"), strings.Join(rs, "<br>")
}

type mdTable struct {
	b    *bytes.Buffer
	cols int
}

func newTable(b *bytes.Buffer, header ...string) mdTable {
	fmt.Fprintf(b, "| %s |\n|", strings.Join(header, " | "))
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	return mdTable{b, len(header)}
}

func (t mdTable) row(cells ...string) {
	for i := range cells {
		cells[i] = strings.ReplaceAll(cells[i], "|", `\|`)
	}
	fmt.Fprintf(t.b, "| %s |\n", strings.Join(cells, " | "))
}

func f3(v float64) string { return fmt.Sprintf("%.3f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

// Page is docs/performance.md: what the run measured, every table, each row beside its target.
func (r *Report) Page(command string) []byte {
	var b bytes.Buffer
	m := r.Machine
	fmt.Fprintf(&b, "<!-- Written by `%s` (test/bench/cmd/bench; test/bench/page.go). Regenerate, do not edit by hand. -->\n", command)
	b.WriteString("# Performance\n\n[Back to the README](../README.md)\n\n")
	fmt.Fprintf(&b, "**Summary:** %s\n\n", r.Summary())
	fmt.Fprintf(&b, "**Reproduce:** `make bench` reruns every section below in one run and rewrites this page, [performance.json](performance.json) "+
		"(one object per measured row: `section`, `mode`, `p50_ms`, `p99_ms`, `per_second`, `rss_mib`, `date`; `null` where a figure does not apply) "+
		"and the README's performance line; it exits 1 when a check of the measurement fails (a floor slower than what it bounds, stray admission work, "+
		"a mode not doing what it says). `bench/results/latest.json` (git-ignored) holds every figure of the run. The machine is shared: compare ratios "+
		"within this run (each section measures its baseline side by side), not absolute times across runs.\n\n")
	fmt.Fprintf(&b, "**Machine:** %d cores, %s, %s RAM, %s. **Run:** started %s, took %s; load average %s at start, %s at end.\n\n",
		m.NProc, m.CPUModel, m.MemGiB, m.Go, r.Started.UTC().Format("2006-01-02 15:04 UTC"),
		(time.Duration(r.Seconds) * time.Second).String(), m.LoadAvg, r.LoadAvgEnd)

	b.WriteString("## Targets\n\n")
	t := newTable(&b, "section", "target", "goal", "measured", "result")
	for _, x := range r.Targets {
		t.row(x.Section, x.Name, x.Goal, x.Measured, result(x))
	}
	if len(r.Reading) > 0 {
		b.WriteString("\nFor reading (no goal):\n\n")
		for _, x := range r.Reading {
			fmt.Fprintf(&b, "- %s\n", x)
		}
	}

	if len(r.Micro) > 0 {
		b.WriteString("\n## 1. Engine micro-benchmarks\n\n`go test -cpu 1 -bench -benchmem` of `pkg/webhook` and `pkg/engine`, median of the runs; targets compare CPU time per op. " +
			"`Generic` is what a plain controller-runtime defaulter does with the same pod.\n\n")
		t := newTable(&b, "benchmark", "ns/op", "CPU ns/op", "B/op", "allocs/op", "CPU vs DecodePod", "target", "result")
		for _, x := range r.Micro {
			rel := ""
			if _, c, ok := strings.Cut(x.Name, "/"); ok {
				if d, ok := MicroByName(r.Micro, "DecodePod/"+c); ok {
					rel = fmt.Sprintf("%.2fx", x.CPUNsOp/d.CPUNsOp)
				}
			}
			g, res := r.rowTargets("micro/" + x.Name)
			t.row(x.Name, f0(x.NsOp), f0(x.CPUNsOp), fmt.Sprint(x.BOp), fmt.Sprint(x.AllocsOp), rel, g, res)
		}
	}
	if steps := r.directSteps(); len(steps) > 0 {
		b.WriteString("\n## 2. Direct load over TLS on 127.0.0.1\n\nThe real `serve` and its floor (`test/bench/cmd/benchserver --mode=constant-answer`: the same `pkg/server` TLS stack, answering allowed without reading the pod), " +
			"each pinned to core 1, the loader on core 0, a realistic pod's AdmissionReview; latency in ms, peak RSS is VmHWM. " +
			"The `webhook-handoff-N` row is `serve --handoff` with its informer holding the pods of a control plane with N unrelated pods (section 6).\n\n")
		t := newTable(&b, "mode", "achieved/s", "p50", "p90", "p99", "p99.9", "errors", "server CPU s/1k req", "peak RSS MiB", "target", "result")
		for _, s := range steps {
			g, res := r.rowTargets(RowKey("direct", DirectMode(s)))
			t.row(DirectMode(s), f0(s.Achieved), f3(float64(s.P50us)/1000), f3(float64(s.P90us)/1000), f3(float64(s.P99us)/1000), f3(float64(s.P999us)/1000),
				fmt.Sprint(s.Errors), f3(s.ServerCPUPer1000), f1(s.PeakRSSMiB), g, res)
		}
	}
	if len(r.API) > 0 || len(r.Peers) > 0 {
		b.WriteString("\n## 3. Pod create through kube-apiserver\n\nThe upstream chart's pod created through a real kube-apiserver and etcd (`bin/k8s`), 8 in parallel, " +
			"in interleaved rounds of every mode, each round in its own order. Modes: `webhook` (this project), `map` (the generated MutatingAdmissionPolicy and pod ValidatingAdmissionPolicy), " +
			"`map-mutating` (the MutatingAdmissionPolicy alone), `map-minimal` (the least MutatingAdmissionPolicy doing the mutation), `constant-patch` (the webhook's own answer for the measured pod, " +
			"byte for byte, precomputed: the webhook minus its engine, its floor), `floor` (a constant answer, not reading the pod), `defaulter` (controller-runtime `admission.WithDefaulter` doing the engine's mutation), " +
			"`none`. The three reference servers run on `pkg/server`'s TLS stack and are registered as the webhook is. Latency in ms. " +
			"API server time per pod is the webhook call as kube-apiserver times it, or for `map` rows the policies' own evaluation time. Stray calls: admission work of another mode in this mode's rounds (must be 0).\n\n")
		var none APIMode
		for _, a := range r.API {
			if a.Mode == "none" {
				none = a
			}
		}
		t := newTable(&b, "mode", "pods", "errors", "mutated", "p50", "p99", "pods/s", "p50 - none", "p99 - none", "API server time per pod", "in-server mean", "stray calls", "target", "result")
		for _, a := range r.API {
			call, srv := "", ""
			if a.APICallMeanMs > 0 {
				call = f3(a.APICallMeanMs)
			}
			if a.ServerMeanMs > 0 {
				srv = f3(a.ServerMeanMs)
			}
			g, res := r.rowTargets(RowKey("apiserver", a.Mode))
			t.row(a.Mode, fmt.Sprint(a.Pods), fmt.Sprint(a.Errors), fmt.Sprint(a.Mutated), f2(a.P50ms), f2(a.P99ms), f0(a.PodsSec),
				fmt.Sprintf("%+.2f", a.P50ms-none.P50ms), fmt.Sprintf("%+.2f", a.P99ms-none.P99ms), call, srv, fmt.Sprint(a.StrayCalls), g, res)
		}
		for _, p := range r.Peers {
			t.row(p.Mode, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "not measured: "+p.Why, "last measured "+p.LastMeasured)
		}
	}
	if len(r.Offline) > 0 {
		b.WriteString("\n## 4. Offline\n\n`pushgateway-lifecycle mutate -f` of N copies of the upstream chart's Deployment in one YAML stream, median wall of 3 runs, peak RSS through GNU time. " +
			"Beside it, `kubectl apply --dry-run=client -f` of the same 1,000-Deployment file (kubectl of `bin/k8s`): the reference a user already waits for. " +
			"It cannot run without an API server (discovery, and each object's live state, one GET per object), so it runs against a kube-apiserver and etcd the bench starts for it on this machine.\n\n")
		t := newTable(&b, "mode", "deployments", "wall ms", "peak RSS MiB", "target", "result")
		for _, o := range r.Offline {
			g, res := r.rowTargets(RowKey("offline", OfflineMode(o)))
			t.row(OfflineMode(o), fmt.Sprint(o.Deployments), f0(o.WallMs), f1(o.PeakRSSMiB), g, res)
		}
	}
	if a := r.Audit; a != nil {
		fmt.Fprintf(&b, "\n## 4b. Audit\n\n`pushgateway-lifecycle audit -A` of %d pods (%d unprotected) in %d namespaces with one Deployment each (median wall of the runs; the cluster built in %.0f s at %.0f pods/s with %d clients). No goal: for reading.\n\n",
			a.Pods, a.Unprotected, a.Namespaces, a.SetupSeconds, a.PodsPerSec, a.Clients)
		t := newTable(&b, "mode", "wall ms", "peak RSS MiB", "output bytes", "exit code")
		for _, run := range a.Runs {
			t.row("audit-"+run.Output, f0(run.WallMs), f1(run.PeakRSSMiB), fmt.Sprint(run.OutputBytes), fmt.Sprint(run.ExitCode))
		}
	}
	if len(r.Memory) > 0 {
		fmt.Fprintf(&b, "\n## 6. Memory of the handoff informer\n\n`serve --handoff` (pinned to core 1) started on a control plane holding N unrelated pods (namespace `crowd`, ~1.5 KB each) and %d upstream-chart Pushgateway pods, "+
			"objects only (no kubelet); each row adds unrelated pods to the last and starts a fresh server, measured 5 s after /readyz (which waits for the informer's first list). "+
			"Pods listed: the pod objects the API server sent in LIST responses and watch events while the server started (`apiserver_storage_list_returned_objects_total` + `apiserver_watch_events_total` for pods): the informer is sent, and holds, only the pods the policy selects. "+
			"The select-everything case (an empty policy selector) is in [handoff-memory.md](handoff-memory.md) (`make bench-handoff-memory`).\n\n", r.Memory[0].SelectedPods)
		t := newTable(&b, "mode", "unrelated pods", "created in s (pods/s)", "ready after start s", "RSS MiB", "peak RSS MiB", "Go heap in use MiB", "pods listed", "target", "result")
		for _, x := range r.Memory {
			created := "—"
			if x.CreateSeconds > 0 {
				created = fmt.Sprintf("%.1f (%.0f)", x.CreateSeconds, x.CreatePerSec)
			}
			g, res := r.rowTargets(RowKey("memory", MemoryMode(x)))
			t.row(MemoryMode(x), fmt.Sprint(x.UnrelatedPods), created, f1(x.ReadySeconds), f1(x.RSSMiB), f1(x.PeakRSSMiB), f1(x.HeapMiB), f0(x.ListedPods), g, res)
		}
	}
	if s := r.Soak; s != nil && s.Load != nil {
		fmt.Fprintf(&b, "\n## 5. Soak\n\n%.0f min at %.0f req/s: %d requests, %d errors, p50 %.3f ms, p99 %.3f ms; RSS %.1f -> %.1f MiB (peak %.1f); goroutines %.0f -> %.0f.\n",
			s.Minutes, s.Rate, s.Load.Requests, s.Load.Errors, float64(s.Load.P50us)/1000, float64(s.Load.P99us)/1000, s.RSSStartMiB, s.RSSEndMiB, s.PeakRSSMiB, s.GoroutineStart, s.GoroutineEnd)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes of the run\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString("\n## How to read the floors\n\n" +
		"A floor is the least a peer's row can cost: the constant-patch floor does the webhook's exact work but its engine (the same TLS stack, the same answer bytes), the constant answer less still. " +
		"A floor slower than what it bounds means the measurement is wrong, not the webhook fast, so the run checks it (above beyond twice the standard error of the paired per-round p50 differences) and exits 1. " +
		"The same goes for admission work of another mode inside a mode's rounds (a removed peer the API server still applies) and for the constant patch not making the webhook's pod. " +
		"The history of these checks (the constant-patch floor once measured with a deleted MutatingAdmissionPolicy still applied) is in issue 23 and the commits of `test/bench`.\n")
	return b.Bytes()
}

// WriteDocs writes docs/performance.md and docs/performance.json under root and replaces the
// README's line after the marker <!-- performance-summary --> with the summary.
func (r *Report) WriteDocs(root, command string) error {
	if err := os.WriteFile(filepath.Join(root, "docs", "performance.md"), r.Page(command), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r.Rows(), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "docs", "performance.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	readme := filepath.Join(root, "README.md")
	b, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	out, ok := ReplaceSummary(b, r.Summary())
	if !ok {
		return fmt.Errorf("README.md has no line %q followed by the summary line", SummaryMarker)
	}
	return os.WriteFile(readme, out, 0o644)
}

// SummaryMarker precedes the README's quote of the page's summary line.
const SummaryMarker = "<!-- performance-summary: written by make bench from docs/performance.md -->"

// ReplaceSummary replaces the line after SummaryMarker in readme by "> " + summary, indented
// as the marker is (inside a list item).
func ReplaceSummary(readme []byte, summary string) ([]byte, bool) {
	lines := strings.Split(string(readme), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == SummaryMarker && i+1 < len(lines) {
			lines[i+1] = l[:len(l)-len(strings.TrimLeft(l, " "))] + "> " + summary
			return []byte(strings.Join(lines, "\n")), true
		}
	}
	return readme, false
}
