package reliability

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// peakRSSLimitKiB bounds the server's memory under overload. Requests are bounded in size
// (7 MiB) and in number by the connections, so memory must stay flat however long the
// overload lasts; 512 MiB is far above what the server needs and far below a node's memory.
const peakRSSLimitKiB = 512 << 10

// creationStats counts pod creations through the API server.
type creationStats struct {
	created, mutated, failed atomic.Int64
	mu                       sync.Mutex
	errs                     []string
	lastUnmutated            atomic.Int64 // unix nanos of the last creation that came back unmutated
}

// createPods creates pushgateway pods through the API server until stop is closed.
func createPods(cp *harness.ControlPlane, ns string, workers int, stop <-chan struct{}) *creationStats {
	st := &creationStats{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{
						Name:   fmt.Sprintf("pgw-%d-%d", w, i),
						Labels: map[string]string{annotations.LabelAppName: "prometheus-pushgateway"},
					},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}}},
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				got, err := cp.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
				cancel()
				if err != nil {
					st.failed.Add(1)
					st.mu.Lock()
					st.errs = append(st.errs, err.Error())
					st.mu.Unlock()
					continue
				}
				st.created.Add(1)
				if _, ok := got.Annotations[annotations.AnnotationStatus]; ok {
					st.mutated.Add(1)
				} else {
					st.lastUnmutated.Store(time.Now().UnixNano())
				}
			}
		}(w)
	}
	go func() { <-stop; wg.Wait() }()
	return st
}

// register points the webhook configurations at baseURL trusting ca, waits until the API
// server calls it for pods in ns, and unregisters in t.Cleanup.
func register(t *testing.T, cp *harness.ControlPlane, ns, baseURL string, ca []byte) {
	t.Helper()
	ctx := context.Background()
	if err := cp.CreateNamespace(ctx, ns, true); err != nil {
		t.Fatal(err)
	}
	cfg := harness.DefaultWebhookConfigs().PointAt(baseURL, ca)
	if err := cp.Register(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Unregister(context.Background(), cfg) })
	if err := cp.WaitForWebhook(ctx, ns, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestOverload measures the server's maximum throughput, then offers three times that for
// 10 s (60 s with -long) while, when a control plane is available, pods are created through
// the API server against the same overloaded server (failurePolicy Ignore, 2 s timeout).
func TestOverload(t *testing.T) {
	s := startServer(t, "")
	url := s.URL(webhook.PathMutatePods)
	dur := 10 * time.Second
	if *long {
		dur = 60 * time.Second
	}

	shared := s.client(16)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	probe := closedLoop(ctx, 16, func() *http.Client { return shared }, url, nil)
	cancel()
	maxRate := float64(probe.ok.Load()) / 3
	if probe.failed.Load() > 0 || maxRate < 50 {
		t.Fatalf("measuring the throughput: %s", probe)
	}
	rate := 3 * maxRate
	t.Logf("measured max throughput %.0f req/s (%s); offering %.0f req/s for %s", maxRate, probe, rate, dur)

	var cp *harness.ControlPlane
	if !testing.Short() {
		cp = controlPlane(t)
		register(t, cp, "overload", strings.TrimSuffix(s.URL(""), "/"), s.pki.PEM)
	}

	stopSampling := make(chan struct{})
	var sampled int64
	var rssSamples []int64
	go func() {
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
				r, _, _ := harness.ProcMemKiB(s.Pid())
				if r > 0 {
					rssSamples = append(rssSamples, r)
				}
			}
		}
	}()
	var creations *creationStats
	stopCreating := make(chan struct{})
	if cp != nil {
		creations = createPods(cp, "overload", 2, stopCreating)
	}
	overloadClient := s.client(256)
	st := openLoop(dur, rate, 1024, overloadClient, url)
	close(stopCreating)
	close(stopSampling)
	time.Sleep(300 * time.Millisecond)
	_, peak, _ := harness.ProcMemKiB(s.Pid())
	sampled = int64(len(rssSamples))

	t.Logf("overload: offered %.0f req/s for %s: %s", rate, dur, st)
	t.Logf("achieved %.0f answered req/s; server RSS peak (VmHWM) %d KiB over %d samples", float64(st.ok.Load())/dur.Seconds(), peak, sampled)
	select {
	case <-s.Exited():
		t.Fatalf("the server died under overload: %v", s.ExitErr())
	default:
	}
	healthy(t, s)
	if peak > peakRSSLimitKiB {
		t.Errorf("peak RSS %d KiB > %d KiB", peak, peakRSSLimitKiB)
	}
	// Overload may slow answers down to the client's timeout; it must never produce a wrong
	// answer, an HTTP error or a refused connection.
	for msg := range st.errs {
		if !strings.Contains(msg, "deadline exceeded") && !strings.Contains(msg, "Timeout") {
			t.Errorf("request failed other than by timing out: %s", msg)
		}
	}
	t.Logf("requests failed under overload: %d (of which timeouts only)", st.failed.Load())
	// The server recovers at once: a request after the overload is answered quickly.
	start := time.Now()
	status, rv, err := post(context.Background(), s.client(1), url, "application/json", reviewJSON("after", "Pod", "", pushgatewayPod(nil)))
	if err != nil || status != 200 || !rv.Response.Allowed {
		t.Fatalf("after the overload: %d %v", status, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("first request after the overload took %s", d)
	}
	if creations != nil {
		time.Sleep(time.Second) // let the creation workers finish their last call
		t.Logf("pods created through the API server during the overload: %d (%d mutated, %d let through unmutated by failurePolicy Ignore), failed %d",
			creations.created.Load(), creations.mutated.Load(), creations.created.Load()-creations.mutated.Load(), creations.failed.Load())
		if creations.failed.Load() > 0 || creations.created.Load() == 0 {
			t.Errorf("pod creations failed during the overload: %v", creations.errs)
		}
	}
}
