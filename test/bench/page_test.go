package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPageAndRows(t *testing.T) {
	r := &Report{Started: time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC), Machine: Machine{NProc: 2, LoadAvg: "0.1 0.2 0.3"}, LoadAvgEnd: "1.0 0.5 0.3",
		Direct: []DirectStep{{Server: "floor", TargetRate: 2000, LoadResult: LoadResult{P99us: 1000}}, {Server: "webhook", TargetRate: 2000, LoadResult: LoadResult{P99us: 1200}, PeakRSSMiB: 35}},
		API: []APIMode{{Mode: "webhook", Pods: 10, Mutated: 10, P50ms: 12, P99ms: 30}, {Mode: "constant-patch", Pods: 10, Mutated: 10, P50ms: 12, P99ms: 30},
			{Mode: "none", Pods: 10, P50ms: 8, P99ms: 20}},
		Offline: []Offline{{Tool: "mutate", Deployments: 1000, WallMs: 300}, {Tool: "kubectl", Deployments: 1000, WallMs: 5000}},
		Memory:  []MemoryRow{{UnrelatedPods: 0, SelectedPods: 100, PeakRSSMiB: 36, ListedPods: 102}, {UnrelatedPods: 10000, SelectedPods: 100, PeakRSSMiB: 36, ListedPods: 102}},
		Peers:   []MissingPeer{{Mode: "kyverno", Why: "not built", LastMeasured: "2026-11-27"}},
	}
	r.Evaluate()
	page := string(r.Page("make bench"))
	for _, want := range []string{"Regenerate, do not edit by hand", "**Summary:** " + r.Summary(), "| kubectl-dry-run-client-1000 |", "| handoff-10000 |", "| kyverno |", "load average 0.1 0.2 0.3 at start, 1.0 0.5 0.3 at end"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "with/without") {
		t.Error("the page prints a retired with/without target")
	}
	b, err := json.Marshal(r.Rows())
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2+3+2+2 {
		t.Fatalf("%d rows, want 9: %s", len(rows), b)
	}
	for _, row := range rows {
		if len(row) != 7 {
			t.Errorf("row %v: want exactly section, mode, p50_ms, p99_ms, per_second, rss_mib, date", row)
		}
		if row["section"] == "memory" && (row["p50_ms"] != nil || row["rss_mib"] == nil) {
			t.Errorf("memory row %v: p50 must be null, rss set", row)
		}
	}
	if !strings.Contains(r.Summary(), "targets met") {
		t.Errorf("summary %q", r.Summary())
	}
}

func TestReplaceSummary(t *testing.T) {
	in := []byte("a\n" + SummaryMarker + "\n> old\nb\n")
	out, ok := ReplaceSummary(in, "new.")
	if !ok || !bytes.Equal(out, []byte("a\n"+SummaryMarker+"\n> new.\nb\n")) {
		t.Fatalf("%v %q", ok, out)
	}
	if _, ok := ReplaceSummary([]byte("a\n"), "x"); ok {
		t.Fatal("no marker: replaced")
	}
}
