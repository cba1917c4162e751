// Package versions holds what depends on the Kubernetes release under test (KUBE_VERSION, the
// binaries hack/k8s-binaries.sh provides): the native preStop sleep action, its feature gate,
// and the chart's sleep-action guard (a ValidatingAdmissionPolicy). `make test-versions` runs
// it with the e2e and chart suites against every version of its matrix.
package versions

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

const (
	nsIn  = "versions-in"  // opted in
	nsOut = "versions-out" // not opted in: the webhook never sees its pods
	// gate is the feature gate of the native sleep action: alpha (off) in 1.29, beta (on, can
	// be turned off) 1.30-1.33, GA and locked on 1.34-1.36, removed in 1.37.
	gate = "PodLifecycleSleepAction"
	// guardMessage is a fragment of the guard's denial message (charts/.../sleepactionguard.yaml).
	guardMessage = "the API server removed the preStop sleep hook"
)

func kubeMinor(t *testing.T) int {
	t.Helper()
	m, err := harness.KubeMinor()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// env is one control plane with the real webhook registered from the chart's configurations.
type env struct {
	cp *harness.ControlPlane
}

func start(ctx context.Context, t *testing.T, flags map[string]string) *env {
	t.Helper()
	began := time.Now()
	cp := harness.NewControlPlane(t, harness.Options{APIServerFlags: flags})
	v, err := cp.Clientset.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver %s up in %s (flags %v)", v.GitVersion, time.Since(began).Round(time.Millisecond), flags)
	wh := cp.StartWebhook(t, harness.WebhookOptions{Args: []string{"--shutdown-delay=0s"}})
	cfgs, err := harness.ChartWebhookConfigsAt(wh.URL(""), cp.CAData, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Register(ctx, cfgs); err != nil {
		t.Fatal(err)
	}
	for ns, in := range map[string]bool{nsIn: true, nsOut: false} {
		if err := cp.CreateNamespace(ctx, ns, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.WaitForWebhook(ctx, nsIn, time.Minute); err != nil {
		t.Fatal(err)
	}
	return &env{cp: cp}
}

// pushgatewayPod is what the upstream prometheus-pushgateway chart creates, as far as the
// selection is concerned.
func pushgatewayPod(name, namespace string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace, Annotations: ann,
			Labels: map[string]string{annotations.LabelAppName: "prometheus-pushgateway"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}}},
	}
}

// create creates the pod and reads the stored object back.
func (e *env) create(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	if _, err := e.cp.Clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return e.cp.Clientset.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
}

// installGuard creates the chart's sleep-action guard exactly as the chart renders it and
// waits until it is enforced (a pod that claims an injected sleep hook but has none is refused).
func (e *env) installGuard(ctx context.Context, t *testing.T) {
	t.Helper()
	out, err := harness.RenderChart("", nil)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := harness.SplitObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	var policyName string
	for _, o := range objs {
		// The guard only (the handoff gate's pod-update policy is the chart's other one).
		if !strings.HasSuffix(o.GetName(), "sleep-action-guard") {
			continue
		}
		switch o.GetKind() {
		case "ValidatingAdmissionPolicy":
			policyName = o.GetName()
		case "ValidatingAdmissionPolicyBinding":
		default:
			continue
		}
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	if len(docs) != 2 || policyName == "" {
		t.Fatalf("the chart rendered %d ValidatingAdmissionPolicy objects, want a policy and its binding", len(docs))
	}
	if _, stderr, err := e.cp.Kubectl(ctx, bytes.NewReader(bytes.Join(docs, []byte("---\n"))), "apply", "-f", "-"); err != nil {
		t.Fatalf("installing the chart's sleep-action guard: %v\n%s", err, stderr)
	}
	// No check of status.typeChecking: kube-controller-manager's status controller writes it,
	// and the harness's runs only the workload controllers. What the guard does is checked below.
	deadline := time.Now().Add(time.Minute)
	// A forged status on a pod the webhook never sees: refused once the guard is enforced.
	forged := pushgatewayPod("forged", nsOut, map[string]string{annotations.AnnotationStatus: "injected: sleep 30s on pushgateway; terminationGracePeriodSeconds 30->45"})
	for {
		_, err := e.cp.Clientset.CoreV1().Pods(nsOut).Create(ctx, forged, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), guardMessage) {
			t.Logf("guard enforced: %v", err)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard did not refuse a pod claiming a sleep hook it does not have within a minute (last: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSleepActionDefault: with the release's default gates, a selected pod keeps the injected
// native sleep hook, and the guard lets it (and an exec hook) through.
func TestSleepActionDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := start(ctx, t, nil)
	e.installGuard(ctx, t)

	got, err := e.create(ctx, pushgatewayPod("default-sleep", nsIn, nil))
	if err != nil {
		t.Fatalf("creating a selected pod with the guard installed: %v", err)
	}
	c := got.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 30 {
		t.Fatalf("stored pod's preStop = %+v, want sleep 30", c.Lifecycle)
	}
	if g := got.Spec.TerminationGracePeriodSeconds; g == nil || *g != 45 {
		t.Fatalf("terminationGracePeriodSeconds = %v, want 45", g)
	}
	t.Logf("stored: preStop sleep %ds, grace %ds, status %q", c.Lifecycle.PreStop.Sleep.Seconds, *got.Spec.TerminationGracePeriodSeconds, got.Annotations[annotations.AnnotationStatus])

	// The guard reads the container names out of the status annotation: check it against the
	// status the engine writes, for a two-container pod with a replaced hook, on pods the
	// webhook never sees (nsOut) with one hook removed by hand, as the gate would.
	t.Run("the guard parses the engine's status", func(t *testing.T) {
		pod := pushgatewayPod("parsed", nsOut, map[string]string{annotations.AnnotationContainers: "pushgateway,sidecar"})
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox",
			Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}})
		pol := policy.Default()
		pol.ExistingPreStop = policy.ExistingPreStopReplace
		mutated, d := engine.Mutate(pod, nsOut, pol)
		status := mutated.Annotations[annotations.AnnotationStatus]
		if !strings.HasPrefix(status, "injected: sleep 30s on pushgateway,sidecar (replaced") {
			t.Fatalf("engine status %q (outcome %v): not the form this case is for", status, d.Outcome)
		}
		dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		if _, err := e.cp.Clientset.CoreV1().Pods(nsOut).Create(ctx, mutated, dry); err != nil {
			t.Fatalf("both hooks present, status %q: refused: %v", status, err)
		}
		for i := range mutated.Spec.Containers {
			stripped := mutated.DeepCopy()
			stripped.Spec.Containers[i].Lifecycle = nil
			_, err := e.cp.Clientset.CoreV1().Pods(nsOut).Create(ctx, stripped, dry)
			if err == nil || !strings.Contains(err.Error(), guardMessage) {
				t.Fatalf("hook of %s removed, status %q: error %v, want the guard's refusal", stripped.Spec.Containers[i].Name, status, err)
			}
		}
		t.Logf("status %q: allowed with both hooks, refused without either", status)
	})

	got, err = e.create(ctx, pushgatewayPod("default-exec", nsIn, map[string]string{annotations.AnnotationPreStopAction: annotations.ActionExec}))
	if err != nil {
		t.Fatalf("creating a selected pod asking for exec: %v", err)
	}
	if c := got.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("stored pod's preStop = %+v, want exec", c.Lifecycle)
	}
}

// TestSleepActionGateOff: the API server started with PodLifecycleSleepAction=false drops the
// injected sleep-only preStop after mutating admission and keeps the grace period (shown
// without the guard); the chart's guard refuses such a pod with the fix in its message; the
// exec form, the fix, is stored intact and passes the guard.
func TestSleepActionGateOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real control plane")
	}
	minor := kubeMinor(t)
	switch {
	case minor >= 37:
		t.Skipf("Kubernetes 1.%d has no %s gate: the sleep action cannot be turned off", minor, gate)
	case minor >= 34:
		// pkg/features/kube_features.go: GA in 1.34 with LockToDefault, so =false makes
		// kube-apiserver refuse to start.
		t.Skipf("Kubernetes 1.%d locks %s on (GA): the sleep action cannot be turned off", minor, gate)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := start(ctx, t, map[string]string{"feature-gates": gate + "=false"})

	t.Run("without the guard the hook is dropped silently", func(t *testing.T) {
		got, err := e.create(ctx, pushgatewayPod("gate-off-unguarded", nsIn, nil))
		if err != nil {
			t.Fatal(err)
		}
		c := got.Spec.Containers[0]
		status := got.Annotations[annotations.AnnotationStatus]
		grace := got.Spec.TerminationGracePeriodSeconds
		t.Logf("stored: lifecycle %+v, grace %v, status %q", c.Lifecycle, ptrString(grace), status)
		if !strings.HasPrefix(status, "injected: sleep 30s on pushgateway") {
			t.Fatalf("status %q: the webhook did not inject its sleep hook", status)
		}
		if grace == nil || *grace != 45 {
			t.Fatalf("terminationGracePeriodSeconds = %v, want the webhook's 45", ptrString(grace))
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			t.Fatalf("preStop = %+v survived: the gate is not off, this test shows nothing", c.Lifecycle.PreStop)
		}
	})

	e.installGuard(ctx, t)

	t.Run("the guard refuses the pod and names the fix", func(t *testing.T) {
		_, err := e.create(ctx, pushgatewayPod("gate-off-guarded", nsIn, nil))
		if err == nil {
			t.Fatal("the pod was created without its hook despite the guard")
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "preStopAction: exec") {
			t.Fatalf("error = %v, want an Invalid naming preStopAction: exec", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("exec is stored intact and passes the guard", func(t *testing.T) {
		got, err := e.create(ctx, pushgatewayPod("gate-off-exec", nsIn, map[string]string{annotations.AnnotationPreStopAction: annotations.ActionExec}))
		if err != nil {
			t.Fatal(err)
		}
		c := got.Spec.Containers[0]
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
			strings.Join(c.Lifecycle.PreStop.Exec.Command, " ") != "/bin/sh -c sleep 30" {
			t.Fatalf("stored preStop = %+v, want exec /bin/sh -c sleep 30", c.Lifecycle)
		}
		if g := got.Spec.TerminationGracePeriodSeconds; g == nil || *g != 45 {
			t.Fatalf("terminationGracePeriodSeconds = %v, want 45", ptrString(g))
		}
		t.Logf("stored: preStop exec %q, grace %d, status %q", c.Lifecycle.PreStop.Exec.Command, *got.Spec.TerminationGracePeriodSeconds, got.Annotations[annotations.AnnotationStatus])
	})

	t.Run("a policy with preStopAction exec fixes every pod", func(t *testing.T) {
		dir := t.TempDir()
		pf := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(pf, []byte("defaults:\n  preStopAction: exec\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// A second server with the fixed policy, registered in place of the first one.
		wh := e.cp.StartWebhook(t, harness.WebhookOptions{PolicyFile: pf, Args: []string{"--shutdown-delay=0s"}})
		cfgs, err := harness.ChartWebhookConfigsAt(wh.URL(""), e.cp.CAData, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.cp.Register(ctx, cfgs); err != nil {
			t.Fatal(err)
		}
		var got *corev1.Pod
		deadline := time.Now().Add(time.Minute)
		for i := 0; ; i++ {
			got, err = e.create(ctx, pushgatewayPod(fmt.Sprintf("gate-off-policy-%d", i), nsIn, nil))
			if err == nil {
				break
			}
			// Until the API server switches to the new configuration, the old server's sleep
			// hook is still injected, dropped and refused by the guard.
			if !strings.Contains(err.Error(), guardMessage) || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if c := got.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
			t.Fatalf("stored preStop = %+v, want exec", c.Lifecycle)
		}
		t.Logf("stored with the exec policy: status %q", got.Annotations[annotations.AnnotationStatus])
	})
}

func ptrString(p *int64) string {
	if p == nil {
		return "<nil>"
	}
	return strconv.FormatInt(*p, 10)
}
