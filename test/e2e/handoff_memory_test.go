package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

var handoffMemory = flag.Bool("handoff-memory", false, "measure the handoff informer's memory with 10,000 unrelated pods and write docs/handoff-memory.md (make bench-handoff-memory)")

const (
	crowdPods    = 10000
	selectedPods = 20
)

// TestHandoffInformerMemory measures what the handoff gate's pod index costs a replica: the
// server's resident set and Go heap with 10,000 unrelated pods and 20 Pushgateway pods in the
// cluster, without --handoff, with it (the label-filtered caches: the API server sends only
// the selectable pods), and with a policy that selects every pod (one unfiltered cache: what
// an index of all pods would hold), side by side in one run.
func TestHandoffInformerMemory(t *testing.T) {
	if !*handoffMemory {
		t.Skip("runs with -handoff-memory (make bench-handoff-memory)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cp := harness.NewControlPlane(t, harness.Options{})
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 2000, 2000
	c := kubernetes.NewForConfigOrDie(cfg)
	for _, ns := range []string{"crowd", "pgw"} {
		if err := cp.CreateNamespace(ctx, ns, ns == "pgw"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var created atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < crowdPods+selectedPods; i += 16 {
				ns, p := "crowd", podgen.CrowdPod(i)
				if i >= crowdPods {
					ns, p = "pgw", chartPod("pgw", nil)
					p.Name = fmt.Sprintf("pgw-%d", i)
				}
				if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				created.Add(1)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d pods created in %.1fs", created.Load(), time.Since(start).Seconds())

	dir := t.TempDir()
	selectAll := filepath.Join(dir, "select-all.yaml")
	writeFileAtomic(t, selectAll, "selector: {}\n")
	type row struct {
		name            string
		args            []string
		policy          string
		rssMiB, heapMiB float64
		readyIn         float64
	}
	rows := []*row{
		{name: "without --handoff", policy: ""},
		{name: "--handoff (label-filtered caches)", args: []string{"--handoff"}},
		{name: "--handoff, policy selecting every pod (one unfiltered cache)", args: []string{"--handoff"}, policy: selectAll},
	}
	// Built once before the first row, so that "ready after start" is the server's own time.
	bin, err := harness.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		began := time.Now()
		wh, err := harness.StartWebhookServer(cp.CertDir, harness.WebhookOptions{
			Binary: bin, PolicyFile: r.policy, Args: append([]string{"--shutdown-delay=0s"}, r.args...),
			Env: []string{"KUBECONFIG=" + cp.KubeconfigPath}, ReadyTimeout: 3 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		r.readyIn = time.Since(began).Seconds()
		// Settle: the list's garbage collected, as a replica that has run for a while.
		time.Sleep(5 * time.Second)
		rss, _, err := harness.ProcMemKiB(wh.Pid())
		if err != nil {
			t.Fatal(err)
		}
		r.rssMiB = float64(rss) / 1024
		heap, err := harness.MetricValue(wh.MetricsURL(), "go_memstats_heap_inuse_bytes")
		if err != nil {
			t.Fatal(err)
		}
		r.heapMiB = heap / (1 << 20)
		if err := wh.Stop(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ready in %.1fs, RSS %.1f MiB, heap in use %.1f MiB", r.name, r.readyIn, r.rssMiB, r.heapMiB)
	}
	if rows[1].rssMiB-rows[0].rssMiB > 10 {
		t.Errorf("the label-filtered index adds %.1f MiB with %d unrelated pods: it is not filtering", rows[1].rssMiB-rows[0].rssMiB, crowdPods)
	}

	var b strings.Builder
	b.WriteString("<!-- Written by `make bench-handoff-memory` (test/e2e: TestHandoffInformerMemory -handoff-memory). Regenerate, do not edit by hand. -->\n")
	b.WriteString("# The handoff gate's pod index: memory with 10,000 unrelated pods\n\n")
	fmt.Fprintf(&b, "Measured %s on %d cores, %s/%s, against a real kube-apiserver holding %d unrelated pods (namespace `crowd`, ~1.5 KB each: labels, annotations, env, resources) and %d upstream-chart Pushgateway pods. "+
		"Each row is the real `pushgateway-lifecycle serve`, started after the pods exist, measured 5 s after /readyz (which with --handoff waits for the caches' first list): resident set from /proc (VmRSS) and the Go heap in use from its metrics.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, crowdPods, selectedPods)
	b.WriteString("| server | ready after start | RSS | Go heap in use |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.1f s | %.1f MiB | %.1f MiB |\n", r.name, r.readyIn, r.rssMiB, r.heapMiB)
	}
	fmt.Fprintf(&b, "\nThe index asks the API server only for the pods its selectors match (the inject label, the policy's selector), so the %d unrelated pods are never sent, decoded or held: "+
		"it adds %.1f MiB of RSS here. A policy whose selector is empty selects every pod, and its one cache holds all of them: %.1f MiB more than without the gate.\n",
		crowdPods, rows[1].rssMiB-rows[0].rssMiB, rows[2].rssMiB-rows[0].rssMiB)
	b.WriteString("\n`make bench` measures the label-filtered row with 0, 10,000 and 100,000 unrelated pods and 100 Pushgateway pods, counts the pod objects the API server sends the informer, and times the server at 2,000 req/s with the informer running: [performance.md, section 6](performance.md#6-memory-of-the-handoff-informer).\n")
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "docs", "handoff-memory.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("wrote docs/handoff-memory.md")
}
