package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// MemoryRow is the real server with the handoff informer (`serve --handoff`) started on a
// control plane holding UnrelatedPods pods no selector of the policy matches and
// SelectedPods upstream-chart Pushgateway pods (objects only: no kubelet runs them).
type MemoryRow struct {
	UnrelatedPods int `json:"unrelated_pods"`
	SelectedPods  int `json:"selected_pods"`
	// CreateSeconds is how long creating this row's new unrelated pods took (rows add to the
	// previous row's pods), CreatePerSec their rate with CreateClients parallel clients.
	CreateSeconds float64 `json:"create_s"`
	CreatePerSec  float64 `json:"create_pods_per_s"`
	CreateClients int     `json:"create_clients"`
	// ReadySeconds is from the server's start to /readyz, which with --handoff waits for the
	// informer's first list.
	ReadySeconds float64 `json:"ready_s"`
	// RSSMiB is VmRSS 5 s after /readyz, PeakRSSMiB VmHWM then (the informer's list included).
	RSSMiB     float64 `json:"rss_mib"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	HeapMiB    float64 `json:"heap_inuse_mib"`
	// ListedPods is how many pod objects the API server sent in LIST responses and watch
	// events while the server started (apiserver_storage_list_returned_objects_total and
	// apiserver_watch_events_total for pods): what the informer was sent, which must be the
	// selected pods only. -1 when the metrics are absent.
	ListedPods float64 `json:"listed_pods"`
	// Load is a direct-load step at LoadRate against this server (nil when not run): the
	// webhook's peak RSS under load with the informer holding its pods.
	Load *DirectStep `json:"load,omitempty"`
}

// MemoryOptions for RunMemory.
type MemoryOptions struct {
	Binary  string
	CertDir string
	CAPEM   []byte
	Body    []byte
	Loader  string
	// Unrelated are the rows' unrelated pod counts, ascending (each row adds to the last).
	Unrelated []int
	Selected  int
	Clients   int
	// LoadAt is the unrelated count of the row that also gets a direct-load step at LoadRate
	// (-1: none).
	LoadAt           int
	LoadRate         float64
	Warmup, Duration time.Duration
}

// RunMemory measures the handoff informer's memory: one control plane, the selected pods
// first, then unrelated pods added row by row; for each row a fresh `serve --handoff`
// pinned to core 1 as in section 2.
func RunMemory(ctx context.Context, o MemoryOptions, log func(string, ...any)) ([]MemoryRow, error) {
	cp, err := startControlPlane(log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 1e6, 1e6
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, ns := range []string{"crowd", "pgw"} {
		if err := cp.CreateNamespace(ctx, ns, false); err != nil {
			return nil, err
		}
	}
	tmpl, err := podgen.TemplatePod()
	if err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tmpl.Spec.ServiceAccountName, Namespace: "pgw"}}
	if _, err := c.CoreV1().ServiceAccounts("pgw").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := createPods(ctx, c, 0, o.Selected, o.Clients, func(i int) *corev1.Pod {
		p := tmpl.DeepCopy()
		p.Namespace, p.GenerateName, p.Name = "pgw", "", "pgw-"+strconv.Itoa(i)
		return p
	}); err != nil {
		return nil, fmt.Errorf("the Pushgateway pods: %w", err)
	}
	// sent is how many pod objects the API server has sent to clients in LIST responses and
	// watch events (a streaming list sends its initial objects as watch events): before and
	// after a server's start, what its informer was sent. A series appears with its first
	// sample, so a missing one before is 0; missing after too, the metrics are not there (-1).
	sent := func() float64 {
		body, err := c.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return -1
		}
		var sum float64
		found := false
		for _, name := range []string{"apiserver_storage_list_returned_objects_total", "apiserver_watch_events_total"} {
			if v, err := metricSumText(string(body), name, `group=""`, `resource="pods"`); err == nil {
				sum += v
				found = true
			}
		}
		if !found {
			return -1
		}
		return sum
	}
	var rows []MemoryRow
	have := 0
	for _, n := range o.Unrelated {
		row := MemoryRow{UnrelatedPods: n, SelectedPods: o.Selected, CreateClients: o.Clients}
		if n > have {
			t := time.Now()
			if _, err := createPods(ctx, c, have, n, o.Clients, podgen.CrowdPod); err != nil {
				return nil, fmt.Errorf("unrelated pods %d-%d: %w", have, n, err)
			}
			row.CreateSeconds = time.Since(t).Seconds()
			row.CreatePerSec = float64(n-have) / row.CreateSeconds
			log("  %d unrelated pods created in %.1f s (%.0f pods/s, %d clients)", n-have, row.CreateSeconds, row.CreatePerSec, o.Clients)
			have = n
		}
		before := max(sent(), 0)
		began := time.Now()
		w, err := startPinnedEnv(o.Binary, o.CertDir, "1", []string{"KUBECONFIG=" + cp.KubeconfigPath}, "--handoff")
		if err != nil {
			return nil, fmt.Errorf("serve --handoff with %d unrelated pods: %w", n, err)
		}
		row.ReadySeconds = time.Since(began).Seconds()
		err = func() error {
			defer func() { _ = w.Stop(15 * time.Second) }()
			// Settle: the list's garbage collected, as a replica that has run for a while.
			time.Sleep(5 * time.Second)
			row.ListedPods = -1
			if after := sent(); after >= 0 {
				row.ListedPods = after - before
			}
			rss, hwm, err := harness.ProcMemKiB(w.Pid())
			if err != nil {
				return err
			}
			row.RSSMiB, row.PeakRSSMiB = float64(rss)/1024, float64(hwm)/1024
			if heap, err := harness.MetricValue(w.MetricsURL(), "go_memstats_heap_inuse_bytes"); err == nil {
				row.HeapMiB = heap / (1 << 20)
			}
			if n != o.LoadAt {
				return nil
			}
			spec := LoadSpec{Addr: fmt.Sprintf("127.0.0.1:%d", w.Port), Path: harness.MutatePodPath, Body: o.Body, CAPEM: o.CAPEM,
				Rate: o.LoadRate, Warmup: o.Warmup, Duration: o.Duration, Connections: 16, Expect: `"patch":"`}
			cpu0, _ := ProcCPU(w.Pid())
			res, err := RunLoader(o.Loader, spec)
			if err != nil {
				return fmt.Errorf("load at %v req/s: %w", o.LoadRate, err)
			}
			cpu1, _ := ProcCPU(w.Pid())
			_, hwm, _ = harness.ProcMemKiB(w.Pid())
			cpu := (cpu1 - cpu0).Seconds() * o.Duration.Seconds() / (o.Warmup + o.Duration).Seconds()
			st := DirectStep{Server: fmt.Sprintf("webhook --handoff, %d unrelated pods", n), TargetRate: o.LoadRate, LoadResult: *res,
				PeakRSSMiB: float64(hwm) / 1024, ServerCores: cpu / o.Duration.Seconds()}
			if res.Requests > 0 {
				st.ServerCPUPer1000 = cpu / float64(res.Requests) * 1000
			}
			row.Load = &st
			log("  --handoff, %d unrelated pods, %s req/s: p50 %.2f p99 %.2f ms, errors %d, peak RSS %.1f MiB",
				n, rateName(o.LoadRate), float64(res.P50us)/1000, float64(res.P99us)/1000, res.Errors, st.PeakRSSMiB)
			return nil
		}()
		if err != nil {
			return nil, err
		}
		log("  --handoff with %d unrelated + %d selected pods: ready in %.1f s, RSS %.1f MiB (peak %.1f), heap %.1f MiB, %v pods listed",
			n, o.Selected, row.ReadySeconds, row.RSSMiB, row.PeakRSSMiB, row.HeapMiB, row.ListedPods)
		rows = append(rows, row)
	}
	return rows, nil
}

// createPods creates pods from..to-1 of gen with clients parallel clients.
func createPods(ctx context.Context, c kubernetes.Interface, from, to, clients int, gen func(int) *corev1.Pod) (int64, error) {
	var created atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var failed atomic.Bool
	var first error
	next := make(chan int)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := gen(i)
				if _, err := c.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					once.Do(func() { first = err; failed.Store(true) })
					continue
				}
				created.Add(1)
			}
		}()
	}
	for i := from; i < to && !failed.Load(); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return created.Load(), first
}

// startControlPlane starts the section's own kube-apiserver and etcd and logs how long it took.
func startControlPlane(log func(string, ...any)) (*harness.ControlPlane, error) {
	t0 := time.Now()
	cp, err := harness.Start(harness.Options{})
	if err != nil {
		return nil, err
	}
	log("  control plane up in %s", time.Since(t0).Round(time.Second))
	return cp, nil
}
