package chart

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/certs"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// installCRDs installs the stand-in CRDs of testdata/crds and waits until they are served.
func installCRDs(ctx context.Context, t *testing.T, cp *harness.ControlPlane) {
	t.Helper()
	if _, stderr, err := cp.Kubectl(ctx, nil, "apply", "-f", filepath.Join("testdata", "crds")); err != nil {
		t.Fatalf("install CRDs: %v\n%s", err, stderr)
	}
	if _, stderr, err := cp.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "-f", filepath.Join("testdata", "crds")); err != nil {
		t.Fatalf("CRDs not established: %v\n%s", err, stderr)
	}
}

// Every rendered variant (each ci values file, config/default, config/certmanager and
// config/prometheus through config/default) is accepted by a real kube-apiserver's server-side
// dry-run: its validation, defaulting and admission, not a reviewer's eye.
func TestServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	installCRDs(ctx, t, cp)
	// Dry-run creates nothing, so the namespace the objects go to must exist for real.
	if err := cp.CreateNamespace(ctx, namespace, false); err != nil {
		t.Fatal(err)
	}
	apply := func(t *testing.T, manifests []byte) {
		t.Helper()
		stdout, stderr, err := cp.Kubectl(ctx, bytes.NewReader(manifests), "apply", "--server-side", "--dry-run=server", "--field-manager=chart-test", "-f", "-")
		if err != nil {
			t.Fatalf("server-side dry-run rejected:\n%s\n%s", stderr, stdout)
		}
		objs, _ := harness.SplitObjects(manifests)
		if n := strings.Count(stdout, "(server dry run)"); n != len(objs) {
			t.Errorf("%d objects accepted, %d rendered:\n%s", n, len(objs), stdout)
		}
	}
	for name, file := range ciFiles(t) {
		t.Run("chart/"+name, func(t *testing.T) {
			out, err := harness.RenderChart(namespace, nil, file)
			if err != nil {
				t.Fatal(err)
			}
			apply(t, out)
		})
	}
	root, _ := fixtures.RepoRoot()
	for _, dir := range []string{"config/default", "config/certmanager", "config/prometheus"} {
		t.Run("kustomize/"+dir, func(t *testing.T) {
			out, err := exec.Command(kubectl(t), "kustomize", filepath.Join(root, dir)).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			if dir == "config/prometheus" {
				// A component of config/default without its namespace: give it the same one.
				out = bytes.ReplaceAll(out, []byte("namespace: system"), []byte("namespace: "+namespace))
			}
			apply(t, out)
		})
	}
}

// A real `helm install` into the apiserver, the rotator run as the chart's ServiceAccount (so
// with exactly the chart's RBAC), then a `helm upgrade` with a changed value while the
// rotator is stopped: the upgrade takes effect and leaves the CA, the serving certificate and
// the injected caBundle as they were.
func TestHelmUpgradeKeepsCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	helm, err := harness.HelmPath()
	if err != nil {
		t.Fatal(err)
	}
	chart, _ := harness.ChartDir()
	helmRun := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, helm, append(args, "--kubeconfig", cp.KubeconfigPath, "--namespace", namespace)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
	}
	// --no-hooks: no kubelet runs the startup check's Job here (TestStartupCheck* runs the
	// check itself; test/node runs the Job).
	helmRun("install", harness.ChartReleaseName, chart, "--create-namespace", "--no-hooks")

	sa := rest.CopyConfig(cp.Config)
	sa.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":pushgateway-lifecycle",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	mgr, err := manager.New(sa, manager.Options{
		Logger:                 zap.New(zap.WriteTo(os.Stderr)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The flags the chart passes (see TestRBACGrants).
	ready, err := certs.Setup(mgr, certs.Options{
		Namespace: namespace, SecretName: "pushgateway-lifecycle-certs", ServiceName: "pushgateway-lifecycle",
		MutatingWebhookName: "pushgateway-lifecycle", ValidatingWebhookName: "pushgateway-lifecycle",
		CertDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			mcancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		}
	}
	defer stop()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("rotator not ready with the chart's RBAC after 60s")
	}
	// The rotator checks its clock against the API server's with the chart's RBAC alone.
	ok := gathered(t, "pushgateway_lifecycle_certificate_clock_checks_total", "ok")
	failed := gathered(t, "pushgateway_lifecycle_certificate_clock_checks_total", "error")
	skew := gathered(t, "pushgateway_lifecycle_certificate_clock_skew_seconds", "")
	if ok < 1 || failed != 0 || skew < -5 || skew > 5 {
		t.Errorf("clock checks ok %v, failed %v, skew %vs: want at least one good read, none failed, |skew| < 5 s on one host", ok, failed, skew)
	}

	cs := cp.Clientset
	snapshot := func() (secret map[string][]byte, mwcCA, vwcCA []byte, timeout int32) {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, "pushgateway-lifecycle-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "pushgateway-lifecycle", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "pushgateway-lifecycle", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Data, m.Webhooks[0].ClientConfig.CABundle, v.Webhooks[0].ClientConfig.CABundle, *m.Webhooks[0].TimeoutSeconds
	}
	var before map[string][]byte
	var mwcCA, vwcCA []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		before, mwcCA, vwcCA, _ = snapshot()
		if len(before[certs.KeyCACert]) > 0 && bytes.Equal(mwcCA, before[certs.KeyCACert]) && bytes.Equal(vwcCA, before[certs.KeyCACert]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Secret not filled or caBundle not injected after 30s (Secret keys %d)", len(before))
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()

	helmRun("upgrade", harness.ChartReleaseName, chart, "--set", "webhook.timeoutSeconds=3", "--no-hooks")
	after, mwcAfter, vwcAfter, timeout := snapshot()
	if timeout != 3 {
		t.Fatalf("upgrade did not apply: timeoutSeconds %d", timeout)
	}
	for _, k := range []string{certs.KeyCACert, certs.KeyCAKey, certs.KeyTLSCert, certs.KeyTLSKey} {
		if !bytes.Equal(before[k], after[k]) {
			t.Errorf("helm upgrade changed %s in the Secret", k)
		}
	}
	if !bytes.Equal(mwcAfter, mwcCA) || !bytes.Equal(vwcAfter, vwcCA) {
		t.Error("helm upgrade changed or removed the injected caBundle")
	}
}

// gathered is the value of a metric in controller-runtime's registry, where the product's
// collectors are registered (0 when absent); result selects the series of that label.
func gathered(t *testing.T, name, result string) float64 {
	t.Helper()
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == "result" && l.GetValue() == result)
			}
			if match {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
