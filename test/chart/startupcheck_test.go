package chart

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/testpki"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/check"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// checkName is the startup check's ServiceAccount (and Job) of the default release.
const checkName = harness.ChartReleaseName + "-startup-check"

// isCheckObject selects what the chart renders for the startup check, minus the hook Job and
// the `helm test` pod: no kubelet runs them here, the test runs the same command itself.
func isCheckObject(kind, name string) bool {
	return strings.HasPrefix(name, checkName) && kind != "Job" && kind != "Pod"
}

// asCheckServiceAccount impersonates the check's ServiceAccount: the check runs with exactly
// the chart's Role and dry-run policy.
func asCheckServiceAccount(cp *harness.ControlPlane) kubernetes.Interface {
	cfg := cp.RESTConfig()
	cfg.Impersonate.UserName = "system:serviceaccount:" + namespace + ":" + checkName
	cfg.Impersonate.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	return kubernetes.NewForConfigOrDie(cfg)
}

func runCheck(ctx context.Context, t *testing.T, cs kubernetes.Interface, timeout time.Duration) (check.Result, error) {
	t.Helper()
	o := check.Defaults()
	o.Namespace, o.Timeout, o.Interval = namespace, timeout, 250*time.Millisecond
	var log bytes.Buffer
	o.Out = &log
	res, err := check.Run(ctx, cs, o)
	t.Logf("check (timeout %s): %+v, err %v; attempts:\n%s", timeout, res, err, log.String())
	return res, err
}

// The startup check in webhook mode, on a real kube-apiserver with the real server and the
// chart's webhook configuration, run as the check's ServiceAccount with the chart's RBAC:
// without the check's own webhook entry it fails (the release namespace is never opted in);
// with a caBundle that does not trust the server it fails and names the TLS error; with the
// chart's configuration and the right caBundle it passes; the ServiceAccount can create
// nothing but a dry-run of the check's pod.
func TestStartupCheckWebhookMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := cp.CreateNamespace(ctx, namespace, false); err != nil {
		t.Fatal(err)
	}
	applyKept(ctx, t, cp, render(t, nil), 5, "the check's ServiceAccount, Role, RoleBinding, policy and binding", isCheckObject)
	asCheck := asCheckServiceAccount(cp)
	w := cp.StartWebhook(t, harness.WebhookOptions{})
	chartConfigs, err := harness.ChartWebhookConfigs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(chartConfigs.Mutating.Webhooks); n != 2 || chartConfigs.Mutating.Webhooks[1].Name != "startup-check.pushgateway-lifecycle.io" {
		t.Fatalf("the chart's MutatingWebhookConfiguration has %d webhooks, want pods and startup-check", n)
	}

	t.Run("the check's ServiceAccount may create only a dry-run of the check's pod", func(t *testing.T) {
		pod := check.Pod(check.Options{Namespace: namespace, Container: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"})
		// The policy binding reaches the API server's admission a moment after it is stored.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := asCheck.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil && strings.Contains(err.Error(), "may only create pods with dry-run") {
				break
			}
			if err == nil {
				_ = cp.Clientset.CoreV1().Pods(namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
			}
			if time.Now().After(deadline) {
				t.Fatalf("a real create by the check's ServiceAccount: %v, want the dry-run-only denial", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		other := harness.ProbePod(namespace)
		_, err := asCheck.CoreV1().Pods(namespace).Create(ctx, other, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "may only create the pod labelled pushgateway-lifecycle.io/startup-check=true") {
			t.Errorf("a dry-run of another pod: %v, want the label denial", err)
		}
		if err := cp.CreateNamespace(ctx, "elsewhere", true); err != nil {
			t.Fatal(err)
		}
		pod.Namespace = "elsewhere"
		if _, err := asCheck.CoreV1().Pods("elsewhere").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
			t.Errorf("a dry-run in another namespace: %v, want Forbidden by RBAC", err)
		}
	})

	t.Run("without the check's webhook entry the check fails: nothing mutates the release namespace", func(t *testing.T) {
		noEntry, err := harness.ChartWebhookConfigs(map[string]any{"startupCheck": map[string]any{"enabled": false}})
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.Register(ctx, noEntry.PointAt(w.URL(""), cp.CAData)); err != nil {
			t.Fatal(err)
		}
		_, err = runCheck(ctx, t, asCheck, 6*time.Second)
		if err == nil || !strings.Contains(err.Error(), "nothing mutated it") {
			t.Fatalf("err = %v, want a failure saying nothing mutated the pod", err)
		}
	})

	t.Run("a broken caBundle: the check fails and names the reason", func(t *testing.T) {
		other, err := testpki.New("not-the-webhooks-ca")
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.Register(ctx, chartConfigs.PointAt(w.URL(""), other.PEM)); err != nil {
			t.Fatal(err)
		}
		_, err = runCheck(ctx, t, asCheck, 8*time.Second)
		if err == nil {
			t.Fatal("the check passed with a caBundle that does not trust the webhook's certificate")
		}
		for _, want := range []string{`failed calling webhook "startup-check.pushgateway-lifecycle.io"`, "x509"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the failure does not say %q: %v", want, err)
			}
		}
	})

	t.Run("a good install: the check passes", func(t *testing.T) {
		if err := cp.Register(ctx, chartConfigs.PointAt(w.URL(""), cp.CAData)); err != nil {
			t.Fatal(err)
		}
		res, err := runCheck(ctx, t, asCheck, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.Hook != "sleep 30s" || res.Grace != 45 || !strings.HasPrefix(res.Status, "injected:") {
			t.Errorf("stored %+v, want the built-in policy's sleep 30s and grace 45", res)
		}
	})
}

// The startup check in admissionPolicy mode (Kubernetes 1.36+): the chart's policies and the
// check's own binding applied for real, the check passes as its ServiceAccount; without that
// binding it fails, since the policy's binding leaves the release namespace out.
func TestStartupCheckAdmissionPolicyMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	skipWithoutMAP(t)
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cp.CreateNamespace(ctx, namespace, false); err != nil {
		t.Fatal(err)
	}
	out, err := renderWith(t, map[string]any{"mode": "admissionPolicy"}, "--api-versions", mapAPI)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := harness.SplitObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	applyKept(ctx, t, cp, objs, 12, "the generator's six policies and bindings, and the check's six objects", func(kind, _ string) bool { return kind != "Job" && kind != "Pod" })
	asCheck := asCheckServiceAccount(cp)
	res, err := runCheck(ctx, t, asCheck, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hook != "sleep 30s" || res.Grace != 45 {
		t.Errorf("stored %+v, want sleep 30s and grace 45", res)
	}
	if err := cp.Clientset.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, checkName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The deletion reaches admission a moment later: wait for the first unmutated pod, then
	// the check must fail for its whole timeout (the policy's own binding never selects the
	// release namespace).
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, err := asCheck.CoreV1().Pods(namespace).Create(ctx, check.Pod(check.Defaults()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := check.Judge(stored, "pushgateway"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the check's pod is still mutated 30 s after its binding was deleted")
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := runCheck(ctx, t, asCheck, 5*time.Second); err == nil || !strings.Contains(err.Error(), "nothing mutated it") {
		t.Fatalf("without the check's binding: err = %v, want a failure saying nothing mutated the pod", err)
	}
}

// What the chart renders for the check: a post-install/post-upgrade hook Job whose log Helm
// prints when it fails, the same pod as `helm test`, hardened like the webhook's pods, with
// labels the webhook's Service, PodDisruptionBudget and NetworkPolicy do not select; nothing
// with startupCheck.enabled=false.
func TestStartupCheckRender(t *testing.T) {
	r := render(t, map[string]any{"startupCheck": map[string]any{"timeout": "90s"}})
	var job batchv1.Job
	r.named(t, "Job", "-startup-check", &job)
	var pod corev1.Pod
	r.named(t, "Pod", "-startup-check-test", &pod)
	for k, v := range map[string]string{
		"helm.sh/hook": "post-install,post-upgrade", "helm.sh/hook-output-log-policy": "hook-failed",
		"helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
	} {
		if job.Annotations[k] != v {
			t.Errorf("Job annotation %s = %q, want %q", k, job.Annotations[k], v)
		}
	}
	if pod.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("test pod hook %q", pod.Annotations["helm.sh/hook"])
	}
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 || job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds != 150 {
		t.Errorf("backoffLimit %v, activeDeadlineSeconds %v; want 0 and the 90 s timeout plus 60", job.Spec.BackoffLimit, job.Spec.ActiveDeadlineSeconds)
	}
	var svc corev1.Service
	r.one(t, "Service", &svc)
	for _, spec := range []corev1.PodSpec{job.Spec.Template.Spec, pod.Spec} {
		c := spec.Containers[0]
		if want := []string{"check", "--namespace=" + namespace, "--timeout=90s"}; !slices.Equal(c.Args, want) {
			t.Errorf("args %v, want %v", c.Args, want)
		}
		if spec.ServiceAccountName != checkName || spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("serviceAccountName %q, restartPolicy %q", spec.ServiceAccountName, spec.RestartPolicy)
		}
		sc := c.SecurityContext
		if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot ||
			sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("the check's pod is not hardened: pod %+v, container %+v", spec.SecurityContext, sc)
		}
	}
	for _, labels := range []map[string]string{job.Spec.Template.Labels, pod.Labels} {
		if labelsMatch(svc.Spec.Selector, labels) {
			t.Errorf("the webhook Service's selector %v selects the check's pod %v", svc.Spec.Selector, labels)
		}
	}
	var m admissionv1.MutatingWebhookConfiguration
	r.one(t, "MutatingWebhookConfiguration", &m)
	w := m.Webhooks[1]
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionv1.Fail ||
		!equality.Semantic.DeepEqual(w.NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": namespace}) ||
		!equality.Semantic.DeepEqual(w.ObjectSelector.MatchLabels, map[string]string{"pushgateway-lifecycle.io/startup-check": "true"}) ||
		!equality.Semantic.DeepEqual(w.ClientConfig, m.Webhooks[0].ClientConfig) {
		t.Errorf("the check's webhook entry %+v", w)
	}

	off := render(t, noCheck)
	for _, o := range off {
		if strings.HasPrefix(o.GetName(), checkName) {
			t.Errorf("startupCheck.enabled=false renders %s %s", o.GetKind(), o.GetName())
		}
	}
	var mo admissionv1.MutatingWebhookConfiguration
	off.one(t, "MutatingWebhookConfiguration", &mo)
	if len(mo.Webhooks) != 1 {
		t.Errorf("startupCheck.enabled=false: %d mutating webhooks, want 1", len(mo.Webhooks))
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}
