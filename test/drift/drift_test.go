// Package drift tests the drift watch against a real kube-apiserver: pods created while no
// webhook is installed (what a SIGKILLed webhook under failurePolicy Ignore lets through)
// are counted and warned about; protected, opted-out and not-opted-in pods are not.
package drift

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/drift"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/handoff"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

type fixed struct{ p *policy.Policy }

func (f fixed) Current() *policy.Policy { return f.p }

func gauge(t *testing.T, ns, state string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.UnprotectedPods.WithLabelValues(ns, state).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func TestDriftWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const in, out = "drift-in", "drift-out"
	if err := cp.CreateNamespace(ctx, in, true); err != nil {
		t.Fatal(err)
	}
	if err := cp.CreateNamespace(ctx, out, false); err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pod := func(ns, name string, mutate func(*corev1.Pod)) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "pushgateway"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}}},
		}
		if mutate != nil {
			mutate(p)
		}
		created, err := cp.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return created
	}
	// What the webhook would have made of it: a fixed point of the engine, so Protected.
	protect := func(p *corev1.Pod) {
		d := engine.Decide(p, p.Namespace, pol)
		if d.Outcome != engine.OutcomeInjected {
			t.Fatalf("engine outcome %v for the protected pod", d.Outcome)
		}
		engine.Apply(p, &d)
	}

	mgr, err := manager.New(cp.Config, manager.Options{
		Logger:                 zap.New(zap.WriteTo(os.Stderr)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	sels, err := handoff.Selectors(pol)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := handoff.NewIndex(mgr, sels)
	if err != nil {
		t.Fatal(err)
	}
	scope := audit.NamespaceScope{NamespaceSelector: labels.SelectorFromSet(labels.Set{annotations.LabelInjection: annotations.InjectionEnabled}), Excluded: []string{"kube-system"}}
	if _, err := drift.Setup(mgr, ix, fixed{pol}, scope, zap.New(zap.WriteTo(os.Stderr))); err != nil {
		t.Fatal(err)
	}

	// Created before the watch starts (the webhook was down, nothing reported them yet).
	pod(in, "unpatched-a", nil)
	pod(in, "protected", protect)
	pod(in, "opted-out", func(p *corev1.Pod) { p.Annotations = map[string]string{annotations.AnnotationInject: "false"} })
	pod(out, "not-opted-in", nil)
	pod(in, "other-app", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web"} })

	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() {
		mcancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	start := time.Now()
	// And one created while the watch runs.
	pod(in, "unpatched-b", nil)
	waitFor := func(what string, cond func() bool) time.Duration {
		t.Helper()
		for !cond() {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: not within 30 s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Since(start)
	}
	took := waitFor("both unpatched pods counted", func() bool { return gauge(t, in, "Unprotected") == 2 })
	t.Logf("both unpatched pods counted %.2f s after the watch started", took.Seconds())
	events := func() map[string]string {
		list, err := cp.Clientset.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, e := range list.Items {
			if e.Reason == drift.ReasonUnprotected {
				got[e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name] = e.Type + " " + e.Message
			}
		}
		return got
	}
	waitFor("a Warning event on each unpatched pod", func() bool { return len(events()) >= 2 })
	// Give wrongly reported pods the same time to show up before judging.
	time.Sleep(2 * time.Second)
	got := events()
	for _, name := range []string{in + "/unpatched-a", in + "/unpatched-b"} {
		e, ok := got[name]
		if !ok || !strings.HasPrefix(e, "Warning Unprotected: ") || !strings.Contains(e, "fix: kubectl get pod") {
			t.Errorf("event on %s = %q, want a Warning naming the state and the fix", name, e)
		}
	}
	if len(got) != 2 {
		t.Errorf("events on %v, want only the two unpatched pods", got)
	}
	for _, s := range []string{"Drifted", "Invalid"} {
		if v := gauge(t, in, s); v != 0 {
			t.Errorf("gauge %s/%s = %v, want 0", in, s, v)
		}
	}
	if v := gauge(t, out, "Unprotected"); v != 0 {
		t.Errorf("gauge for the namespace that is not opted in = %v, want 0", v)
	}

	// A fixed pod leaves the count: deleting it (its controller would re-create it through the webhook).
	if err := cp.Clientset.CoreV1().Pods(in).Delete(ctx, "unpatched-a", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	waitFor("the deleted pod leaves the count", func() bool { return gauge(t, in, "Unprotected") == 1 })
}
