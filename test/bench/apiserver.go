package bench

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/bench/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// APIMode is the pod-create latency of one mode over all its rounds.
type APIMode struct {
	Mode    string  `json:"mode"` // "webhook" or "none"
	Pods    int     `json:"pods"`
	Errors  int     `json:"errors"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	PodsSec float64 `json:"pods_per_s"`
	// Mutated counts created pods that carry the status annotation (all of them with the
	// webhook, none without): the proof that the mode is what it says.
	Mutated int `json:"mutated"`
	// ServerMeanMs is the webhook server's own mean handling time (controller-runtime's
	// webhook latency histogram) and ServerCPUms its CPU time per pod create: what of the
	// added latency is spent inside the webhook process at all.
	ServerMeanMs float64 `json:"server_mean_ms,omitempty"`
	ServerCPUms  float64 `json:"server_cpu_ms_per_pod,omitempty"`
}

// APIOptions for RunAPIServer.
type APIOptions struct {
	Binary      string
	Pods        int // per mode
	Rounds      int // per mode, interleaved
	Parallelism int
}

// RunAPIServer creates Pods of the upstream chart through a real kube-apiserver, in rounds
// that alternate between the webhook registered and not registered.
func RunAPIServer(ctx context.Context, o APIOptions, log func(string, ...any)) ([]APIMode, error) {
	t0 := time.Now()
	cp, err := harness.Start(harness.Options{})
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	log("  control plane up in %s", time.Since(t0).Round(time.Second))
	wh, err := harness.StartWebhookServer(cp.CertDir, harness.WebhookOptions{Binary: o.Binary})
	if err != nil {
		return nil, err
	}
	defer func() { _ = wh.Stop(10 * time.Second) }()

	const ns = "bench"
	if err := cp.CreateNamespace(ctx, ns, true); err != nil {
		return nil, err
	}
	tmpl, err := podgen.TemplatePod()
	if err != nil {
		return nil, err
	}
	tmpl.Namespace = ns
	tmpl.GenerateName = ""
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tmpl.Spec.ServiceAccountName, Namespace: ns}}
	if _, err := cp.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	cfg := cp.RESTConfig()
	// client-go's default limiter (5 QPS) would measure itself.
	cfg.QPS, cfg.Burst = 1e6, 1e6
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	configs := harness.DefaultWebhookConfigs().PointAt(fmt.Sprintf("https://127.0.0.1:%d", wh.Port), cp.CAData)
	configs.Validating = nil

	setMode := func(with bool) error {
		if with {
			if err := cp.Register(ctx, configs); err != nil {
				return err
			}
			return cp.WaitForWebhook(ctx, ns, 30*time.Second)
		}
		if err := cp.Unregister(ctx, configs); err != nil {
			return err
		}
		return cp.WaitForWebhookGone(ctx, ns, 30*time.Second)
	}

	seq := 0
	round := func(n int) (lat []time.Duration, errs int, wall time.Duration) {
		var mu sync.Mutex
		next := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < o.Parallelism; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					pod := tmpl.DeepCopy()
					pod.Name = "pgw-" + strconv.Itoa(i)
					t := time.Now()
					_, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
					d := time.Since(t)
					mu.Lock()
					if err != nil {
						errs++
						if errs <= 3 {
							log("  create error: %v", err)
						}
					} else {
						lat = append(lat, d)
					}
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < n; i++ {
			next <- seq
			seq++
		}
		close(next)
		wg.Wait()
		return lat, errs, time.Since(start)
	}

	// Warm both paths (connections, informers, the webhook's TLS session) before measuring.
	for _, with := range []bool{true, false} {
		if err := setMode(with); err != nil {
			return nil, err
		}
		round(4 * o.Parallelism)
	}

	type acc struct {
		lat  []time.Duration
		errs int
		wall time.Duration
	}
	modes := map[bool]*acc{true: {}, false: {}}
	per := o.Pods / o.Rounds
	firstMeasured := seq
	latency := func() (sum, count float64) {
		l := `webhook="` + harness.MutatePodPath + `"`
		sum, _ = MetricSum(wh.MetricsURL(), "controller_runtime_webhook_latency_seconds_sum", l)
		count, _ = MetricSum(wh.MetricsURL(), "controller_runtime_webhook_latency_seconds_count", l)
		return sum, count
	}
	sum0, count0 := latency()
	cpu0, _ := ProcCPU(wh.Pid())
	for r := 0; r < o.Rounds; r++ {
		order := []bool{true, false}
		if r%2 == 1 {
			order = []bool{false, true}
		}
		for _, with := range order {
			if err := setMode(with); err != nil {
				return nil, err
			}
			lat, errs, wall := round(per)
			a := modes[with]
			a.lat = append(a.lat, lat...)
			a.errs += errs
			a.wall += wall
		}
		log("  round %d/%d done", r+1, o.Rounds)
	}

	sum1, count1 := latency()
	cpu1, _ := ProcCPU(wh.Pid())

	// Which pods got mutated, by mode: pods are numbered in creation order and every round
	// is one block, so count annotations per block.
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	mutated := map[bool]int{}
	for _, p := range pods.Items {
		i, err := strconv.Atoi(p.Name[len("pgw-"):])
		if err != nil || i < firstMeasured {
			continue
		}
		// Block b is round b/2's first (b even) or second mode; odd rounds start without.
		b := (i - firstMeasured) / per
		withMode := (b/2%2 == 0) == (b%2 == 0)
		if _, ok := p.Annotations[annotations.AnnotationStatus]; ok {
			mutated[withMode]++
		}
	}

	var out []APIMode
	for _, with := range []bool{true, false} {
		a := modes[with]
		m := APIMode{Mode: "none", Pods: len(a.lat), Errors: a.errs, Mutated: mutated[with]}
		if with {
			m.Mode = "webhook"
			if count1 > count0 {
				m.ServerMeanMs = (sum1 - sum0) / (count1 - count0) * 1000
				m.ServerCPUms = ms(cpu1-cpu0) / (count1 - count0)
			}
		}
		sort.Slice(a.lat, func(i, j int) bool { return a.lat[i] < a.lat[j] })
		if len(a.lat) > 0 {
			m.P50ms = ms(a.lat[len(a.lat)*50/100])
			m.P99ms = ms(a.lat[min(len(a.lat)-1, len(a.lat)*99/100)])
			m.PodsSec = float64(len(a.lat)) / a.wall.Seconds()
		}
		out = append(out, m)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
