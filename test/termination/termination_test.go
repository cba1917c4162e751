package termination

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

var (
	proof       = flag.Bool("proof", false, "run the full-scale proof (three arms at scale 1 plus the sweep) and write docs/why.md, the event logs and the timelines under docs/proof")
	delay       = flag.Duration("delay", 5*time.Second, "propagation delay (pod time) between the pod starting to terminate and the Service no longer routing to it")
	timelineDir = flag.String("timeline-dir", "", "write each arm's event log (.jsonl) and timeline (.svg) here; with -proof the default is docs/proof")
)

func fixture(t *testing.T, root, name string) string {
	t.Helper()
	p, err := fixtures.UpstreamChartFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pushgatewayBinary runs hack/pushgateway.sh, which returns the cached binary at once or builds
// the pinned version from the Go module proxy.
func pushgatewayBinary(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "hack", "pushgateway.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/pushgateway.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// mutatedSpec builds the real CLI and runs `pushgateway-lifecycle mutate` on the fixture: arm 3
// is whatever the product does to the upstream chart, not a hand-written copy of it.
func mutatedSpec(t *testing.T, root, manifest string) (Termination, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pushgateway-lifecycle")
	// The same flags as `make build`, so that the build cache it left is reused.
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/pushgateway-lifecycle")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pushgateway-lifecycle: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "mutate", "-f", manifest).Output()
	if err != nil {
		stderr := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("pushgateway-lifecycle mutate -f %s: %v\n%s", manifest, err, stderr)
	}
	term, err := FromManifests(out)
	if err != nil {
		t.Fatalf("reading the mutated manifest: %v\n%s", err, out)
	}
	return term, string(out)
}

func readSpec(t *testing.T, path string) Termination {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	term, err := FromManifests(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return term
}

// chartExample is the preStop the upstream chart's values.yaml shows, commented out, for users to
// copy by hand; the chart still sets no terminationGracePeriodSeconds, so the default 30 s holds.
func chartExample(upstream Termination) Termination {
	t := upstream
	t.HasPreStop = true
	t.PreStopSleep = 30 * time.Second
	t.PreStop = `exec ["sh" "-c" "sleep 30"]`
	return t
}

func TestProof(t *testing.T) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest := fixture(t, root, "persistence.yaml")
	bin := pushgatewayBinary(t, root)
	upstream := readSpec(t, manifest)
	mutated, _ := mutatedSpec(t, root, manifest)

	cfg := Config{
		Scale: 5, Delay: *delay, Pushers: 4, PushEvery: 10 * time.Millisecond,
		Warmup: time.Second, Tail: 500 * time.Millisecond, Binary: bin, WorkDir: t.TempDir(),
	}
	// Short form, at 1/5 time: a fixed store that persists in a few tenths of a second, far
	// below the scaled 15 s budget (3 s) even on a busy machine, so that arm 3's assertion is
	// safe; the propagation window (1 s) is long enough for arm 1's refusals to show even when
	// pushers first wait for their in-flight pushes. Arm 2 is only reported here: whether this
	// small store outlasts the scaled 2 s floor (0.4 s) depends on the machine's load.
	preload := Preload{Groups: 4, PerGroup: 1000, ValueBytes: 10000}
	if *proof {
		cfg.Scale = 1
		cfg.PushEvery = 50 * time.Millisecond
		cfg.Warmup = 3 * time.Second
		cfg.Tail = 2 * time.Second
	}

	ps := &Processes{}
	t.Cleanup(ps.StopAll)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	start := time.Now()
	loadBefore := loadAverage()
	var seed *Seeded
	if *proof {
		// Full scale: the store is sized so that persisting takes about the geometric middle
		// of the stop windows arm 2 (the kubelet's 2 s floor) and arm 3 (the 15 s budget) leave
		// after SIGTERM: far enough from both to tell them apart. Persist time follows the CPU
		// the machine has to spare, hence a measurement rather than a fixed size.
		target := time.Duration(math.Sqrt(float64(minimumGracePeriod) * float64(15*time.Second)))
		var probed *Seeded
		probed, seed, err = Calibrate(ctx, ps, bin, cfg.WorkDir, Preload{Groups: 5, PerGroup: 1000, ValueBytes: 20000}, target, 40)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("\ncalibration: %.1f MB persisted in %s; target persist time %s\n", float64(probed.Bytes)/1e6, seconds(probed.PersistTook), seconds(target))
	} else if seed, err = Seed(ctx, ps, bin, cfg.WorkDir, preload); err != nil {
		t.Fatal(err)
	}
	cfg.Seed = seed
	preload = seed.Preload
	fmt.Printf("preload: %d series in %d groups, label values of %d bytes: %.1f MB persisted; Pushgateway's shutdown persist took %s (SIGTERM to exit)\n",
		preload.Series(), preload.Groups, preload.ValueBytes, float64(seed.Bytes)/1e6, seconds(seed.PersistTook))

	arms := []Arm{
		{Name: "1 upstream chart", Term: upstream, File: "arm1-upstream-chart"},
		{Name: "2 chart's commented example", Term: chartExample(upstream), File: "arm2-chart-example"},
		{Name: "3 pushgateway-lifecycle mutate", Term: mutated, File: "arm3-mutate"},
	}
	var results []*Result
	for _, arm := range arms {
		r, err := Run(ctx, ps, cfg, arm)
		if err != nil {
			t.Fatalf("arm %s: %v", arm.Name, err)
		}
		results = append(results, r)
		logResult(t, r)
		checkLog(t, r)
		t.Logf("the picture: %s", pictureReading(r))
	}
	outDir := *timelineDir
	if outDir == "" && *proof {
		outDir = filepath.Join(root, "docs", "proof")
	}
	if outDir != "" {
		writeTimelines(t, outDir, results)
	}
	header := scaleNote(cfg)
	fmt.Printf("\n%s\n\n%s\n", header, Table(results))
	t.Logf("arms took %s", time.Since(start).Round(time.Second))

	arm1, arm3 := results[0], results[2]
	if arm1.RefusedOld == 0 {
		t.Errorf("arm 1 (no preStop) refused nothing while the old pod was still routed to: the experiment no longer discriminates")
	}
	if arm3.RefusedOld != 0 {
		t.Errorf("arm 3 (mutated spec) had %d pushes refused/reset while the old pod was routed to; want 0", arm3.RefusedOld)
	}
	if arm3.Lost != 0 {
		t.Errorf("arm 3 (mutated spec) lost %d acknowledged pushes; want 0", arm3.Lost)
	}
	for _, r := range results {
		if r.AckOld == 0 || r.AckNew == 0 {
			t.Errorf("arm %s: no acknowledged push on the old (%d) or the new pod (%d): the load did not reach both", r.Arm.Name, r.AckOld, r.AckNew)
		}
		if !r.MarkerRestored {
			t.Errorf("arm %s: the replacement did not restore the preloaded store", r.Arm.Name)
		}
		if r.FailedNew != 0 || r.LostAckedByNew != 0 || r.Other != 0 {
			t.Errorf("arm %s: unexpected failures %v (lost after ack by the replacement: %d)", r.Arm.Name, r.OtherKinds, r.LostAckedByNew)
		}
	}
	if !*proof {
		return
	}

	sweep := runSweep(ctx, t, ps, cfg, upstream)
	writeTimelines(t, outDir, sweep)
	fmt.Printf("\nSweep (%s)\n\n%s\n%s\n%s\n", header, Table(sweep), sweepConclusion(cfg, seed, sweep), defaultsConclusion(cfg, results, sweep))
	t.Logf("proof took %s", time.Since(start).Round(time.Second))
	writeResults(t, root, cfg, seed, results, sweep, time.Since(start), loadBefore+" / "+loadAverage())
}

func logResult(t *testing.T, r *Result) {
	t.Helper()
	t.Logf("%s: %s; attempted %d, refused/reset while old routed %d, acked %d+%d, lost %d, 503 %d (%s), killed %v, SIGTERM->exit %s, restore %s",
		r.Arm.Name, r.Arm.Term, r.Attempts, r.RefusedOld, r.AckOld, r.AckNew, r.Lost, r.NoEndpoint,
		seconds(r.NoEndpointTime), r.Killed, seconds(r.StopTook), seconds(r.RestoreTook))
}

func scaleNote(cfg Config) string {
	if cfg.Scale == 1 {
		return fmt.Sprintf("scale 1 (real time): propagation delay %s; %d pushers, one push each at most every %s", cfg.Delay, cfg.Pushers, cfg.PushEvery)
	}
	return fmt.Sprintf("time scale 1/%g: every pod-time duration (preStop, grace, the kubelet's 2 s floor, the %s propagation delay) is divided by %g; measured times (persist, SIGTERM to exit, 503 time) are real; %d pushers, one push each at most every %s",
		cfg.Scale, cfg.Delay, cfg.Scale, cfg.Pushers, cfg.PushEvery)
}

// runSweep varies the preStop sleep around the propagation delay and the shutdown budget around
// the measured persist time; grace = sleep + budget, with no 30 s floor, so the budget is what
// the process gets after SIGTERM (never less than the kubelet's 2 s).
func runSweep(ctx context.Context, t *testing.T, ps *Processes, cfg Config, upstream Termination) []*Result {
	t.Helper()
	d := cfg.Delay.Truncate(time.Second)
	sleeps := []time.Duration{max(d/2, time.Second).Truncate(time.Second), d, 2 * d}
	persist := cfg.Seed.PersistTook
	low := max((persist / 2).Truncate(time.Second), 2*time.Second)
	if low >= persist {
		t.Logf("sweep: persist %s is too short for a budget below it (the kubelet floors the stop window at 2 s)", persist)
	}
	budgets := []time.Duration{low, 15 * time.Second}
	var out []*Result
	for _, b := range budgets {
		for _, s := range sleeps {
			term := upstream // the chart's pod, readiness probe included
			term.HasPreStop, term.PreStopSleep, term.PreStop, term.Grace = true, s, "sleep "+s.String(), s+b
			arm := Arm{Name: fmt.Sprintf("sleep %s, budget %s", s, b), Term: term, File: fmt.Sprintf("sweep%d-sleep%s-budget%s", len(out)+1, s, b)}
			r, err := Run(ctx, ps, cfg, arm)
			if err != nil {
				t.Fatalf("sweep %s: %v", arm.Name, err)
			}
			logResult(t, r)
			checkLog(t, r)
			out = append(out, r)
		}
	}
	return out
}

func sweepConclusion(cfg Config, seed *Seeded, sweep []*Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Reading the sweep (propagation delay %s; the seeding run persisted the store in %s):\n", cfg.Delay, seconds(seed.PersistTook))
	for _, r := range sweep {
		var verdict []string
		if r.RefusedOld > 0 {
			verdict = append(verdict, fmt.Sprintf("%d refused/reset while the old pod was still routed to", r.RefusedOld))
		}
		if r.Lost > 0 {
			verdict = append(verdict, fmt.Sprintf("%d acknowledged pushes lost (SIGKILL during the shutdown persist)", r.Lost))
		}
		if len(verdict) == 0 {
			verdict = append(verdict, "nothing refused, nothing lost")
		}
		fmt.Fprintf(&b, "- %s: %s; %s without an endpoint\n", r.Arm.Name, strings.Join(verdict, "; "), seconds(r.NoEndpointTime))
	}
	return b.String()
}

// defaultsConclusion states what the run says about the webhook's defaults (30 s sleep, 15 s
// budget), from the measured figures.
func defaultsConclusion(cfg Config, arms, sweep []*Result) string {
	var longest time.Duration
	lostLow, refusedAtDelay, refusedAbove := 0, 0, 0
	for _, r := range append(append([]*Result{}, arms...), sweep...) {
		if !r.Killed {
			longest = max(longest, r.StopTook)
		}
	}
	for _, r := range sweep {
		if r.Arm.Term.Grace-r.Arm.Term.PreStopSleep < 15*time.Second {
			lostLow += r.Lost
		}
		switch {
		case r.Arm.Term.PreStopSleep == cfg.Delay:
			refusedAtDelay += r.RefusedOld
		case r.Arm.Term.PreStopSleep > cfg.Delay:
			refusedAbove += r.RefusedOld
		}
	}
	arm1, arm3 := arms[0], arms[2]
	var b strings.Builder
	b.WriteString("## The defaults (30 s sleep, 15 s budget)\n\n")
	fmt.Fprintf(&b, "- **Budget 15 s: keep.** It covered every shutdown measured here: the longest SIGTERM-to-exit without SIGKILL was %s, "+
		"with a store far larger than usual Pushgateway stores (%.0f MB), and with in-flight pushes queued behind the store's consistency check. "+
		"The sweep's budget below the persist time lost %d acknowledged pushes.\n", seconds(longest), float64(cfg.Seed.Bytes)/1e6, lostLow)
	fmt.Fprintf(&b, "- **Sleep 30 s: keep as the default, with its cost stated.** The sleep has to exceed the propagation delay, not just match it: "+
		"a sleep equal to the delay still had %d pushes refused (a race at the boundary), twice the delay had %d. "+
		"The delay is about a second for kube-proxy and up to tens of seconds behind external load balancers and ingresses, which 30 s covers. "+
		"The cost is real under the chart's `Recreate` strategy: the replacement starts only after the old pod has gone, so every second of sleep "+
		"beyond the delay is a second with no endpoint (arm 3: %s without an endpoint against %s refused or without an endpoint in arm 1). "+
		"Where clients reach the Pushgateway only through its ClusterIP, lower it per pod with `pushgateway-lifecycle.io/pre-stop-sleep` "+
		"(or `defaults.preStopSleep` in the policy) to a few seconds above the measured delay.\n",
		refusedAtDelay, refusedAbove, seconds(arm3.NoEndpointTime), seconds(arm1.RefusedTime+arm1.NoEndpointTime))
	return b.String()
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d cores (%s)%s, %s/%s, %s", runtime.NumCPU(), model, kernel, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func writeResults(t *testing.T, root string, cfg Config, seed *Seeded, arms, sweep []*Result, took time.Duration, load string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("<!-- Written by `make proof` (test/termination: TestProof -proof). Regenerate, do not edit by hand. -->\n")
	b.WriteString("# Why: what is lost without it\n\n")
	b.WriteString("[Back to the README](../README.md). **Reproduce:** `make proof` (about 6 minutes; it needs only Go: the Pushgateway is built " +
		"from the Go module proxy) reruns everything below against the real Pushgateway and rewrites this page, the event logs " +
		"(`docs/proof/*.jsonl`, one JSON object a line: every route change, signal, persist and push of an arm, in seconds from the pod's deletion) " +
		"and the pictures drawn from them (`docs/proof/*.svg`). `make test` runs a short form at 1/5 time that fails if arm 3 refuses or loses " +
		"a push, or if arm 1 stops refusing, and checks that the committed pictures are what the committed logs render to " +
		"(`go test ./test/timeline`). The same three arms on a real node, with nothing replayed (the kubelet, the EndpointSlice controller, " +
		"kube-proxy, a volume): [why-node.md](why-node.md) (`make proof-node`).\n\n")
	fmt.Fprintf(&b, "Measured %s on %s (load average before/after the run: %s); the run took %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), load, took.Round(time.Second))
	b.WriteString("![Timelines of the three arms on one time scale](proof/timeline.svg)\n\n")
	b.WriteString("How the picture reads:\n")
	for _, r := range arms {
		fmt.Fprintf(&b, "- %s\n", pictureReading(r))
	}
	b.WriteString("\n" + pictureNote)
	b.WriteString("\nEach arm alone, with its event log: ")
	for i, r := range append(append([]*Result{}, arms...), sweep...) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "[%s](proof/%s.svg) ([events](proof/%s.jsonl))", r.Arm.Name, r.Arm.File, r.Arm.File)
	}
	b.WriteString(".\n\n## The run\n\n")
	fmt.Fprintf(&b, "The real Pushgateway (%s, built from the Go module proxy by `hack/pushgateway.sh`) runs with `--persistence.file` "+
		"(the chart's persistence variant mounts the volume; the flag is what users add through `extraArgs`), "+
		"preloaded with %d series (%.0f MB persisted; the seeding run's shutdown persist took %s). %s. "+
		"For each pod spec the test replays what the kubelet does: t=0 the pod is deleted; the preStop runs (sleep action or `sh -c \"sleep N\"`, "+
		"cut at the grace period); SIGTERM; SIGKILL when the grace period ends, but never less than 2 s after SIGTERM (kuberuntime's "+
		"`minimumGracePeriodInSeconds`). A proxy plays the Service: it routes to the old pod until the propagation delay has passed, "+
		"then answers 503 until the replacement passes its readiness probe (the chart's `initialDelaySeconds: 10`), then routes to it. "+
		"The replacement starts once the old process is gone, on the same persistence file (`Recreate`). "+
		"Afterwards the replacement is queried (`/api/v1/metrics`) for every acknowledged push.\n\n",
		filepath.Base(filepath.Dir(cfg.Binary)), seed.Preload.Series(), float64(seed.Bytes)/1e6, seconds(seed.PersistTook), scaleNote(cfg))
	b.WriteString("Arms: 1) the upstream chart 3.8.0 as rendered (`persistence.yaml`); 2) the chart's own commented-out example applied by hand " +
		"(preStop `sh -c \"sleep 30\"`, grace left at 30 s); 3) the output of `pushgateway-lifecycle mutate -f persistence.yaml`.\n\n")
	b.WriteString(Table(arms))
	b.WriteString(`
How to read it:
- **Refused/reset while the old pod was routed to**: on SIGTERM Pushgateway closes its listener (` + "`server.Shutdown`" + ` in main.go), so every push the
  Service still sends there is refused. Without a preStop that is the whole propagation delay. A client that pushes once and exits (a batch job) loses it.
- **Acknowledged lost**: the client got a 2xx and the replacement does not have it. After its HTTP server has stopped, Pushgateway drains its
  write queue and persists the whole store into a temporary file that it renames over ` + "`--persistence.file`" + ` (storage/diskmetricstore.go).
  A SIGKILL during that persist keeps the previous file, so everything pushed since the last periodic persist is gone although it was
  acknowledged (` + "`--persistence.interval`" + ` is 5 m by default; 1 h here so that only the shutdown persist counts). This is what the
  chart's commented example does: its sleep uses up the 30 s grace period and leaves the 2 s floor for the persist.
- **503 time is not the same in every arm.** Under ` + "`Recreate`" + ` the replacement starts only after the old pod has gone, so the time without
  an endpoint is about sleep + persist + start + readiness delay - propagation delay. The preStop turns arm 1's refusals into 503s from a Service
  with no endpoint and lengthens that time by (sleep - delay); what it removes is pushes sent to a pod that no longer takes them, and, with the
  budget, the silent loss of acknowledged pushes.
- **Why large label values**: Pushgateway checks every push against the whole store (it gathers all of it), so a store of many small series
  makes each push about as slow as a persist. Large values make the persist expensive while pushes still get through (each takes up to
  seconds with this store, hence the small acknowledged counts). The store is sized by measurement so that persisting it takes several
  seconds on the machine at hand: between the 2 s floor and the 15 s budget.
- Not modelled: the new pod's own endpoint propagation, scheduling and image pull (they lengthen every arm's 503 time alike), and
  kube-proxy's fallback to serving terminating endpoints when no ready one exists (it could keep routing to the old pod during its preStop).

`)
	b.WriteString("## Sweep: preStop sleep against the propagation delay, shutdown budget against the persist time\n\n")
	b.WriteString("Grace = sleep + budget here (no 30 s floor), so the budget is the stop window after SIGTERM.\n\n")
	b.WriteString("![Timelines of the sweep on one time scale](proof/sweep.svg)\n\n")
	b.WriteString(Table(sweep))
	b.WriteString("\n")
	b.WriteString(sweepConclusion(cfg, seed, sweep))
	b.WriteString("\n")
	b.WriteString(defaultsConclusion(cfg, arms, sweep))
	path := filepath.Join(root, "docs", "why.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return f[0]
}
