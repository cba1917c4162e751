// Package e2e proves the webhook's promises against a real kube-apiserver, etcd and
// kube-controller-manager, with the real pushgateway-lifecycle binary serving on 127.0.0.1.
// Every case creates objects through the apiserver and reads the stored pod back.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

const (
	nsIn  = "e2e-in"  // opted in
	nsOut = "e2e-out" // not opted in
)

// suite is the shared state: one control plane, one webhook server (restarted on the same port
// when a case needs another policy or no server at all), one registered configuration.
type suite struct {
	cp         *harness.ControlPlane
	wh         *harness.Webhook
	port       int
	policyFile string
	cfgs       harness.WebhookConfigs
	// client records the warnings the apiserver relays from admission webhooks.
	client   kubernetes.Interface
	warnings *harness.WarningRecorder
	// servers is every server started, for the logs of a failed run.
	servers []*harness.Webhook
}

const warnPolicy = "onInvalid: warn\n"

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a real control plane")
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("e2e wall time: %s", time.Since(start).Round(time.Second)) })
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	s := &suite{}
	s.cp = harness.NewControlPlane(t, harness.Options{ControllerManager: true})
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))
	cfg, rec := harness.WithWarnings(s.cp.RESTConfig())
	s.client, s.warnings = kubernetes.NewForConfigOrDie(cfg), rec

	t.Cleanup(func() {
		for i, wh := range s.servers {
			if err := wh.Stop(15 * time.Second); err != nil {
				t.Errorf("stopping webhook server %d: %v", i, err)
			}
			if t.Failed() {
				t.Logf("webhook server %d (of %d) output, last 16 KiB:\n%s", i+1, len(s.servers), tailString(wh.Logs(), 16<<10))
			}
		}
	})
	s.policyFile = filepath.Join(t.TempDir(), "policy.yaml")
	writeFileAtomic(t, s.policyFile, warnPolicy)
	var err error
	if s.port, err = harness.FreePort(); err != nil {
		t.Fatal(err)
	}
	s.startServer(t, s.policyFile)
	t.Logf("webhook built and ready after %s", time.Since(start).Round(time.Millisecond))

	s.cfgs = webhookConfigs(t).PointAt(s.wh.URL(""), s.cp.CAData)
	if err := s.cp.Register(ctx, s.cfgs); err != nil {
		t.Fatal(err)
	}
	for ns, in := range map[string]bool{nsIn: true, nsOut: false, harness.WebhookNamespace: true} {
		if err := s.cp.CreateNamespace(ctx, ns, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.cp.WaitForWebhook(ctx, nsIn, time.Minute); err != nil {
		t.Fatal(err)
	}

	t.Run("1 opted-in chart pod gets sleep 30 and grace 45", func(t *testing.T) { s.case1(ctx, t) })
	t.Run("2 unselected pods are untouched", func(t *testing.T) { s.case2(ctx, t) })
	t.Run("3 annotations tune sleep, grace and action", func(t *testing.T) { s.case3(ctx, t) })
	t.Run("4 apiserver accepts every patched pod", func(t *testing.T) { s.case4(ctx, t) })
	t.Run("5 bad annotations warn or reject", func(t *testing.T) { s.case5(ctx, t) })
	t.Run("6 webhook down fails open", func(t *testing.T) { s.case6(ctx, t) })
	t.Run("7 reinvocation is idempotent", func(t *testing.T) { s.case7(ctx, t) })
	t.Run("8 server-side dry run returns the mutated pod", func(t *testing.T) { s.case8(ctx, t) })
	t.Run("9 upstream chart workloads via controller-manager", func(t *testing.T) { s.case9(ctx, t) })
	t.Run("10 policy hot reload", func(t *testing.T) { s.case10(ctx, t) })
	t.Run("11 workloads are validated at apply time", func(t *testing.T) { s.case11(ctx, t) })
	t.Run("12 controllers' writes are never validated", func(t *testing.T) { s.case12(ctx, t) })
	t.Run("13 unselected workloads never reach the validating webhook", func(t *testing.T) { s.case13(ctx, t) })
	t.Run("14 data risks are said at apply", func(t *testing.T) { s.case14(ctx, t) })
}

// webhookConfigs is what the suite registers: the chart's own rendered webhook
// configurations (default values), with only the clientConfig pointed at the local server, so
// that the selectors, rules and failure policy proven here are the ones users install.
func webhookConfigs(t *testing.T) harness.WebhookConfigs {
	t.Helper()
	c, err := harness.ChartWebhookConfigs(nil)
	if err != nil {
		t.Fatalf("rendering the chart's webhook configurations: %v", err)
	}
	if c.Validating == nil {
		t.Fatal("the chart rendered no ValidatingWebhookConfiguration")
	}
	t.Logf("webhook configurations: the chart's (helm template %s), pointed at the local server", harness.ChartReleaseName)
	return c
}

// startServer starts the server on the suite's port. Servers outlive the subtest that starts
// them, so their cleanup belongs to the top-level test (see TestE2E), not to t.
func (s *suite) startServer(t *testing.T, policyFile string) {
	t.Helper()
	wh, err := harness.StartWebhookServer(s.cp.CertDir, harness.WebhookOptions{
		PolicyFile: policyFile,
		Port:       s.port,
		// Quick shutdown for the restarts between cases; readiness still goes false first.
		Args: []string{"--shutdown-delay=0s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wh = wh
	s.servers = append(s.servers, wh)
}

func (s *suite) restartServer(ctx context.Context, t *testing.T, policyFile string) {
	t.Helper()
	if err := s.wh.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.startServer(t, policyFile)
	if err := s.cp.WaitForWebhook(ctx, nsIn, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ---- pods and their relevant fields ----

var nameSeq int

func uniqueName(prefix string) string {
	nameSeq++
	return fmt.Sprintf("%s-%d", prefix, nameSeq)
}

// chartPod is a pod as the upstream chart labels it.
func chartPod(ns string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: uniqueName("pgw"), Namespace: ns,
			Labels:      map[string]string{annotations.LabelAppName: "prometheus-pushgateway"},
			Annotations: ann,
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3",
		}}},
	}
}

// create creates the pod and returns what the apiserver stored (read back with a GET).
func (s *suite) create(ctx context.Context, t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if _, err := s.client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	got, err := s.cp.Clientset.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// relevant is what the failure messages show of a stored pod.
func relevant(pod *corev1.Pod) string {
	type c struct {
		Name      string            `json:"name"`
		Lifecycle *corev1.Lifecycle `json:"lifecycle,omitempty"`
	}
	v := struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Grace       *int64            `json:"terminationGracePeriodSeconds,omitempty"`
		Containers  []c               `json:"containers"`
	}{Name: pod.Namespace + "/" + pod.Name, Labels: pod.Labels, Annotations: pod.Annotations, Grace: pod.Spec.TerminationGracePeriodSeconds}
	for _, x := range pod.Spec.Containers {
		v.Containers = append(v.Containers, c{x.Name, x.Lifecycle})
	}
	b, _ := yaml.Marshal(v)
	return "stored pod:\n" + string(b)
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func grace(pod *corev1.Pod) int64 {
	if pod.Spec.TerminationGracePeriodSeconds == nil {
		return -1
	}
	return *pod.Spec.TerminationGracePeriodSeconds
}

// preStop describes a container's hook as "sleep N", "exec <argv>", "none" or "other".
func preStop(pod *corev1.Pod, name string) string {
	c := container(pod, name)
	if c == nil {
		return "no such container"
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return "none"
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return fmt.Sprintf("sleep %d", h.Sleep.Seconds)
	case h.Exec != nil:
		return fmt.Sprintf("exec %q", h.Exec.Command)
	default:
		return "other"
	}
}

func status(pod *corev1.Pod) string { return pod.Annotations[annotations.AnnotationStatus] }

// expectInjected asserts the hook on container, the grace period and an "injected" status.
func expectInjected(t *testing.T, pod *corev1.Pod, containerName, hook string, wantGrace int64) {
	t.Helper()
	bad := false
	if got := preStop(pod, containerName); got != hook {
		t.Errorf("container %s preStop = %s, want %s", containerName, got, hook)
		bad = true
	}
	if got := grace(pod); got != wantGrace {
		t.Errorf("terminationGracePeriodSeconds = %d, want %d", got, wantGrace)
		bad = true
	}
	if !strings.HasPrefix(status(pod), "injected") {
		t.Errorf("status annotation = %q, want it to start with \"injected\"", status(pod))
		bad = true
	}
	if bad {
		t.Log(relevant(pod))
	}
}

// expectUntouched asserts the pod carries nothing of ours (the apiserver's default grace 30).
func expectUntouched(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	bad := false
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle != nil {
			t.Errorf("container %s got a lifecycle", c.Name)
			bad = true
		}
	}
	if g := grace(pod); g != 30 {
		t.Errorf("terminationGracePeriodSeconds = %d, want the apiserver default 30", g)
		bad = true
	}
	if _, ok := pod.Annotations[annotations.AnnotationStatus]; ok {
		t.Errorf("status annotation present: %q", status(pod))
		bad = true
	}
	if bad {
		t.Log(relevant(pod))
	}
}

// ---- the cases ----

func (s *suite) case1(ctx context.Context, t *testing.T) {
	pod := s.create(ctx, t, chartPod(nsIn, nil))
	expectInjected(t, pod, "pushgateway", "sleep 30", 45)
	if want := "injected: sleep 30s on pushgateway"; !strings.Contains(status(pod), want) {
		t.Errorf("status %q does not contain %q", status(pod), want)
	}
	if !strings.Contains(status(pod), "30->45") {
		t.Errorf("status %q does not record the grace change 30->45", status(pod))
	}
}

func (s *suite) case2(ctx context.Context, t *testing.T) {
	t.Run("chart pod in a namespace without the label", func(t *testing.T) {
		expectUntouched(t, s.create(ctx, t, chartPod(nsOut, nil)))
	})
	t.Run("unlabelled pod in an opted-in namespace", func(t *testing.T) {
		p := chartPod(nsIn, nil)
		p.Labels = map[string]string{"app": "something-else"}
		before := s.mutateCalls(t)
		expectUntouched(t, s.create(ctx, t, p))
		// The configuration's matchConditions keep such pods off the webhook entirely: an
		// outage of the webhook can never slow down pods it has no business with.
		if calls := s.mutateCalls(t) - before; calls != 0 {
			t.Errorf("the apiserver called the webhook %v times for an unselected pod", calls)
		}
	})
	// Excluded namespaces, even when labelled: the apiserver must not even call the webhook
	// (its request counter stays put), so the exclusion is the configuration's, not the
	// handler's.
	for _, ns := range []string{"kube-system", harness.WebhookNamespace} {
		t.Run("chart pod in "+ns+" even when labelled", func(t *testing.T) {
			if err := s.cp.SetNamespaceOptIn(ctx, ns, true); err != nil {
				t.Fatal(err)
			}
			before := s.mutateCalls(t)
			expectUntouched(t, s.create(ctx, t, chartPod(ns, nil)))
			if calls := s.mutateCalls(t) - before; calls != 0 {
				t.Errorf("the apiserver called the webhook %v times for a pod in %s", calls, ns)
			}
		})
	}
	t.Run("explicit inject=true label selects any pod", func(t *testing.T) {
		p := chartPod(nsIn, nil)
		p.Labels = map[string]string{annotations.LabelInject: "true"}
		p.Spec.Containers[0].Name = "app"
		p.Spec.Containers[0].Image = "example.com/app:1"
		expectInjected(t, s.create(ctx, t, p), "app", "sleep 30", 45)
	})
	t.Run("inject=false annotation opts out", func(t *testing.T) {
		pod := s.create(ctx, t, chartPod(nsIn, map[string]string{annotations.AnnotationInject: "false"}))
		if preStop(pod, "pushgateway") != "none" || grace(pod) != 30 || !strings.HasPrefix(status(pod), "skipped") {
			t.Errorf("want untouched with a skipped status\n%s", relevant(pod))
		}
	})
}

func (s *suite) case3(ctx context.Context, t *testing.T) {
	tuned := map[string]string{annotations.AnnotationPreStopSleep: "90s", annotations.AnnotationShutdownBudget: "20s"}
	expectInjected(t, s.create(ctx, t, chartPod(nsIn, tuned)), "pushgateway", "sleep 90", 110)

	tuned[annotations.AnnotationPreStopAction] = "exec"
	expectInjected(t, s.create(ctx, t, chartPod(nsIn, tuned)), "pushgateway", `exec ["/bin/sh" "-c" "sleep 90"]`, 110)
}

func (s *suite) case4(ctx context.Context, t *testing.T) {
	type row struct {
		name      string
		ann       map[string]string
		podGrace  *int64
		mutate    func(*corev1.Pod)
		hook      string // on container "pushgateway"
		wantGrace int64
	}
	i64 := func(v int64) *int64 { return &v }
	rows := []row{
		{name: "defaults", hook: "sleep 30", wantGrace: 45},
		{name: "minimum sleep", ann: map[string]string{annotations.AnnotationPreStopSleep: "5"}, hook: "sleep 5", wantGrace: 30},
		{name: "maximum sleep", ann: map[string]string{annotations.AnnotationPreStopSleep: "300s"}, hook: "sleep 300", wantGrace: 315},
		{name: "sleep with zero budget", ann: map[string]string{annotations.AnnotationPreStopSleep: "1m30s", annotations.AnnotationShutdownBudget: "0"}, hook: "sleep 90", wantGrace: 90},
		{name: "explicit grace equal to sleep", ann: map[string]string{annotations.AnnotationPreStopSleep: "60", annotations.AnnotationTerminationGracePeriod: "60"}, hook: "sleep 60", wantGrace: 60},
		{name: "explicit grace at the cap", ann: map[string]string{annotations.AnnotationTerminationGracePeriod: "600s"}, hook: "sleep 30", wantGrace: 600},
		{name: "longer existing grace is kept", podGrace: i64(200), hook: "sleep 30", wantGrace: 200},
		{name: "zero grace is raised", podGrace: i64(0), hook: "sleep 30", wantGrace: 45},
		{name: "exec action with explicit grace", ann: map[string]string{annotations.AnnotationPreStopAction: "exec", annotations.AnnotationPreStopSleep: "10s", annotations.AnnotationTerminationGracePeriod: "12s"}, hook: `exec ["/bin/sh" "-c" "sleep 10"]`, wantGrace: 12},
		{name: "auto action", ann: map[string]string{annotations.AnnotationPreStopAction: "auto"}, hook: "sleep 30", wantGrace: 45},
		{
			name: "sidecar and init container, containers annotation", ann: map[string]string{annotations.AnnotationContainers: "pushgateway,sidecar"},
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
				p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
			},
			hook: "sleep 30", wantGrace: 45,
		},
		{
			// The hook is the workload's own (existingPreStop: keep); the grace period has to
			// cover that hook plus the budget (7+15 < 30), so the default 30 stays.
			name: "existing short preStop is kept", mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 7}}}
			},
			hook: "sleep 7", wantGrace: 30,
		},
		{
			// A kept hook longer than the default: the grace period covers it (40+15).
			name: "existing long preStop is kept and covered", mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 40}}}
			},
			hook: "sleep 40", wantGrace: 55,
		},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			p := chartPod(nsIn, r.ann)
			p.Spec.TerminationGracePeriodSeconds = r.podGrace
			if r.mutate != nil {
				r.mutate(p)
			}
			got := s.create(ctx, t, p) // fails the row if the apiserver rejects the patched pod
			if h := preStop(got, "pushgateway"); h != r.hook {
				t.Errorf("preStop = %s, want %s\n%s", h, r.hook, relevant(got))
			}
			if g := grace(got); g != r.wantGrace {
				t.Errorf("grace = %d, want %d\n%s", g, r.wantGrace, relevant(got))
			}
			// The apiserver's own rule, checked on what it stored.
			for _, c := range got.Spec.Containers {
				if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil && c.Lifecycle.PreStop.Sleep.Seconds > grace(got) {
					t.Errorf("container %s sleeps %d > grace %d", c.Name, c.Lifecycle.PreStop.Sleep.Seconds, grace(got))
				}
			}
			if r.name == "sidecar and init container, containers annotation" {
				if h := preStop(got, "sidecar"); h != "sleep 30" {
					t.Errorf("sidecar preStop = %s, want sleep 30\n%s", h, relevant(got))
				}
				if got.Spec.InitContainers[0].Lifecycle != nil {
					t.Errorf("init container got a lifecycle\n%s", relevant(got))
				}
			}
		})
	}
}

func (s *suite) case5(ctx context.Context, t *testing.T) {
	bad := map[string]string{annotations.AnnotationPreStopSleep: "banana"}
	t.Run("warn: defaults and a warning", func(t *testing.T) {
		s.warnings.Reset()
		pod := s.create(ctx, t, chartPod(nsIn, bad))
		expectInjected(t, pod, "pushgateway", "sleep 30", 45)
		if !s.warnings.Contains(annotations.AnnotationPreStopSleep, "banana") {
			t.Errorf("no warning naming %s and the bad value; warnings received: %q", annotations.AnnotationPreStopSleep, s.warnings.Warnings())
		}
		if !strings.Contains(status(pod), "banana") {
			t.Errorf("status annotation does not list the problem: %q", status(pod))
		}
	})
	t.Run("warn: kubectl prints the warning", func(t *testing.T) {
		p := chartPod(nsIn, bad)
		p.APIVersion, p.Kind = "v1", "Pod"
		doc, _ := yaml.Marshal(p)
		_, stderr, err := s.cp.Kubectl(ctx, bytes.NewReader(doc), "create", "-f", "-")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "Warning:") || !strings.Contains(stderr, "banana") {
			t.Errorf("kubectl stderr has no warning naming the bad value:\n%s", stderr)
		}
	})
	t.Run("reject: creation fails with the message", func(t *testing.T) {
		reject := filepath.Join(filepath.Dir(s.policyFile), "reject.yaml")
		writeFileAtomic(t, reject, "onInvalid: reject\n")
		s.restartServer(ctx, t, reject)
		defer s.restartServer(ctx, t, s.policyFile)
		p := chartPod(nsIn, bad)
		_, err := s.client.CoreV1().Pods(nsIn).Create(ctx, p, metav1.CreateOptions{})
		if err == nil {
			t.Fatalf("pod with %s=banana was created under onInvalid: reject", annotations.AnnotationPreStopSleep)
		}
		msg := err.Error()
		if !strings.Contains(msg, annotations.AnnotationPreStopSleep) || !strings.Contains(msg, "banana") {
			t.Errorf("denial does not name the annotation and the value: %s", msg)
		}
		if !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) && !apierrors.IsInvalid(err) {
			t.Errorf("denial is not a 4xx: %v", err)
		}
		if _, err := s.cp.Clientset.CoreV1().Pods(nsIn).Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("denied pod exists (get: %v)", err)
		}
		// A valid pod still passes under reject.
		expectInjected(t, s.create(ctx, t, chartPod(nsIn, nil)), "pushgateway", "sleep 30", 45)
	})
}

func (s *suite) case6(ctx context.Context, t *testing.T) {
	if err := s.wh.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	defer s.restartServer(ctx, t, s.policyFile)
	for i := 0; i < 3; i++ {
		start := time.Now()
		pod := s.create(ctx, t, chartPod(nsIn, nil))
		expectUntouched(t, pod)
		// Connection refused fails fast; anything near the 2 s timeout would mean it waited.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("create took %s with the webhook down", d)
		}
	}
}

func (s *suite) case7(ctx context.Context, t *testing.T) {
	// A second webhook whose configuration sorts after ours, so the apiserver calls it second;
	// it touches the container we patched and adds an annotation, so the apiserver reinvokes
	// ours (reinvocationPolicy IfNeeded).
	second := harness.StartTestWebhookT(t, s.cp.CertDir, func(pod *corev1.Pod) []harness.PatchOp {
		ops := []harness.PatchOp{{Op: "add", Path: "/metadata/annotations/e2e.example~1second", Value: "touched"}}
		if pod.Annotations == nil {
			ops[0] = harness.PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{"e2e.example/second": "touched"}}
		}
		for i, c := range pod.Spec.Containers {
			env := corev1.EnvVar{Name: "SECOND_WEBHOOK", Value: "1"}
			if c.Env == nil {
				ops = append(ops, harness.PatchOp{Op: "add", Path: fmt.Sprintf("/spec/containers/%d/env", i), Value: []corev1.EnvVar{env}})
			} else {
				ops = append(ops, harness.PatchOp{Op: "add", Path: fmt.Sprintf("/spec/containers/%d/env/-", i), Value: env})
			}
		}
		return ops
	})
	never := admissionv1.NeverReinvocationPolicy
	fail := admissionv1.Fail
	none := admissionv1.SideEffectClassNone
	url := second.URL
	cfg := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-e2e-second"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:         "second.e2e.example",
			ClientConfig: admissionv1.WebhookClientConfig{URL: &url, CABundle: s.cp.CAData},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"e2e-second": "on"}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	api := s.cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) }()
	// Wait until the apiserver calls the second webhook too.
	probe := func() *corev1.Pod {
		p := chartPod(nsIn, nil)
		p.Labels["e2e-second"] = "on"
		return p
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.client.CoreV1().Pods(nsIn).Create(ctx, probe(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Annotations["e2e.example/second"] == "touched" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second webhook not called within 30s (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	single := s.create(ctx, t, chartPod(nsIn, nil))
	before := s.mutateCalls(t)
	twice := s.create(ctx, t, probe())
	calls := s.mutateCalls(t) - before
	if calls < 2 {
		t.Errorf("our webhook was called %v times for the pod, want 2 (reinvocation did not happen)", calls)
	}
	if twice.Annotations["e2e.example/second"] != "touched" || len(container(twice, "pushgateway").Env) != 1 {
		t.Errorf("the second webhook's edits are missing\n%s", relevant(twice))
	}
	if preStop(twice, "pushgateway") != preStop(single, "pushgateway") || grace(twice) != grace(single) || status(twice) != status(single) {
		t.Errorf("reinvoked result differs from a single pass:\nsingle: %s\nreinvoked: %s", relevant(single), relevant(twice))
	}
	expectInjected(t, twice, "pushgateway", "sleep 30", 45)
}

// mutateCalls reads controller-runtime's request counter for our mutating path.
func (s *suite) mutateCalls(t *testing.T) float64 { return s.webhookCalls(t, harness.MutatePodPath) }

// webhookCalls reads controller-runtime's request counter for one webhook path: how often the
// API server called it.
func (s *suite) webhookCalls(t *testing.T, path string) float64 {
	t.Helper()
	resp, err := http.Get(s.wh.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "controller_runtime_webhook_requests_total{") && strings.Contains(line, `webhook="`+path+`"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

func (s *suite) case8(ctx context.Context, t *testing.T) {
	p := chartPod(nsIn, nil)
	p.APIVersion, p.Kind = "v1", "Pod"
	doc, _ := yaml.Marshal(p)
	out, _, err := s.cp.Kubectl(ctx, bytes.NewReader(doc), "create", "--dry-run=server", "-o", "yaml", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Pod
	if err := yaml.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("kubectl output is not a pod: %v\n%s", err, out)
	}
	expectInjected(t, &got, "pushgateway", "sleep 30", 45)
	if _, err := s.cp.Clientset.CoreV1().Pods(nsIn).Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run stored the pod (get: %v)", err)
	}
}

func (s *suite) case9(ctx context.Context, t *testing.T) {
	for _, fixture := range []string{"default.yaml", "default-sts.yaml"} {
		t.Run(fixture, func(t *testing.T) {
			ns := "e2e-chart-" + strings.TrimSuffix(fixture, ".yaml")
			if err := s.cp.CreateNamespace(ctx, ns, true); err != nil {
				t.Fatal(err)
			}
			kinds := applyChartFixture(ctx, t, s.cp, fixture, ns, 2)
			t.Logf("applied %s to %s: %s", fixture, ns, strings.Join(kinds, ", "))
			pods, err := s.cp.WaitForPods(ctx, ns, "app.kubernetes.io/instance=pgw", 2, 90*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i := range pods {
				if len(pods[i].OwnerReferences) == 0 {
					t.Errorf("pod %s has no owner: not created by the controller-manager", pods[i].Name)
				}
				expectInjected(t, &pods[i], "pushgateway", "sleep 30", 45)
			}
		})
	}
}

func (s *suite) case10(ctx context.Context, t *testing.T) {
	defer writeFileAtomic(t, s.policyFile, warnPolicy)
	// A new valid policy: new pods follow it, with the same process.
	pid := s.wh.Pid()
	writeFileAtomic(t, s.policyFile, "onInvalid: warn\ndefaults:\n  preStopSleep: 60s\n  shutdownBudget: 20s\n")
	s.waitForPolicy(ctx, t, "sleep 60", 80)
	expectInjected(t, s.create(ctx, t, chartPod(nsIn, nil)), "pushgateway", "sleep 60", 80)

	// An invalid one is refused and counted; the last good policy stays.
	failuresBefore := s.metric(t, `pushgateway_lifecycle_policy_reloads_total{result="failure"}`)
	writeFileAtomic(t, s.policyFile, "onInvalid: warn\ndefaults:\n  preStopSleep: 2s\nlimits:\n  minPreStopSleep: 10s\n  maxPreStopSleep: 5s\n")
	deadline := time.Now().Add(30 * time.Second)
	for s.metric(t, `pushgateway_lifecycle_policy_reloads_total{result="failure"}`) <= failuresBefore {
		if time.Now().After(deadline) {
			t.Fatalf("invalid policy not reported as a failed reload within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectInjected(t, s.create(ctx, t, chartPod(nsIn, nil)), "pushgateway", "sleep 60", 80)
	if s.wh.Pid() != pid {
		t.Errorf("server restarted")
	}
	select {
	case <-s.wh.Exited():
		t.Fatalf("server exited on an invalid policy: %v", s.wh.ExitErr())
	default:
	}

	// Back to the suite's policy: the defaults return.
	writeFileAtomic(t, s.policyFile, warnPolicy)
	s.waitForPolicy(ctx, t, "sleep 30", 45)
}

// waitForPolicy creates dry-run pods until the server applies the expected hook and grace.
func (s *suite) waitForPolicy(ctx context.Context, t *testing.T, hook string, wantGrace int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.cp.Clientset.CoreV1().Pods(nsIn).Create(ctx, chartPod(nsIn, nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && preStop(got, "pushgateway") == hook && grace(got) == wantGrace {
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("error %v", err)
			if got != nil {
				msg = relevant(got)
			}
			t.Fatalf("new policy (%s, grace %d) not applied within 30s; last dry-run: %s", hook, wantGrace, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var metricLine = regexp.MustCompile(`^(\S+)\s+(\S+)$`)

// metric reads one sample (name with labels exactly as exposed) from the server's /metrics.
func (s *suite) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get(s.wh.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if m := metricLine.FindStringSubmatch(line); m != nil && m[1] == series {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return 0
}

// writeFileAtomic replaces path by a rename, the way a kubelet swaps a ConfigMap volume, so
// the server never reads a half-written file.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// case11 proves the validating webhook (the reliability issue's early validation): a typo in a
// workload's pod template is reported at apply time, not when its pods are created.
func (s *suite) case11(ctx context.Context, t *testing.T) {
	deployment := func(ann map[string]string) *appsv1.Deployment {
		pod := chartPod(nsIn, ann)
		// Persisting to a claim under Recreate: no data-risk warning (case 14 has those), so
		// the annotation checks are alone here.
		pod.Spec.Containers[0].Args = []string{"--persistence.file=/data/pushgateway.data"}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pgw"}}}}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: uniqueName("dep"), Namespace: nsIn, Labels: pod.Labels},
			Spec: appsv1.DeploymentSpec{
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
				// No pods needed: the check is on the template at apply time.
				Replicas: new(int32),
				Selector: &metav1.LabelSelector{MatchLabels: pod.Labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec},
			},
		}
	}
	bad := map[string]string{annotations.AnnotationShutdownBudget: "-5s"}
	t.Run("warn: created with a warning", func(t *testing.T) {
		// The validating configuration was registered with the mutating one; wait until the
		// apiserver calls it too, with dry-run creates.
		deadline := time.Now().Add(30 * time.Second)
		for {
			s.warnings.Reset()
			_, err := s.client.AppsV1().Deployments(nsIn).Create(ctx, deployment(bad), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatal(err)
			}
			if s.warnings.Contains(annotations.AnnotationShutdownBudget, "-5s") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no warning naming %s=-5s within 30s; warnings: %q", annotations.AnnotationShutdownBudget, s.warnings.Warnings())
			}
			time.Sleep(200 * time.Millisecond)
		}
		s.warnings.Reset()
		d := deployment(bad)
		if _, err := s.client.AppsV1().Deployments(nsIn).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatalf("warn mode must not deny: %v", err)
		}
		if !s.warnings.Contains(annotations.AnnotationShutdownBudget, "-5s") {
			t.Errorf("create returned no warning naming the annotation and value: %q", s.warnings.Warnings())
		}
	})
	t.Run("valid template: no warning", func(t *testing.T) {
		s.warnings.Reset()
		if _, err := s.client.AppsV1().Deployments(nsIn).Create(ctx, deployment(map[string]string{annotations.AnnotationPreStopSleep: "45s"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if w := s.warnings.Warnings(); len(w) > 0 {
			t.Errorf("unexpected warnings: %q", w)
		}
	})
	t.Run("reject: denied with the message", func(t *testing.T) {
		reject := filepath.Join(filepath.Dir(s.policyFile), "reject.yaml")
		writeFileAtomic(t, reject, "onInvalid: reject\n")
		s.restartServer(ctx, t, reject)
		defer s.restartServer(ctx, t, s.policyFile)
		d := deployment(bad)
		_, err := s.client.AppsV1().Deployments(nsIn).Create(ctx, d, metav1.CreateOptions{})
		if err == nil {
			t.Fatal("Deployment with an invalid pod template annotation was created under onInvalid: reject")
		}
		if msg := err.Error(); !strings.Contains(msg, annotations.AnnotationShutdownBudget) || !strings.Contains(msg, "-5s") {
			t.Errorf("denial does not name the annotation and the value: %s", msg)
		}
		if _, err := s.cp.Clientset.AppsV1().Deployments(nsIn).Get(ctx, d.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("denied Deployment exists (get: %v)", err)
		}
	})
}
