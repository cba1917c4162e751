package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

const (
	testNS      = "pgl-system"
	testSecret  = "pgl-certs"
	testService = "pgl"
	testConfig  = "pgl"
	testSA      = "pgl"
)

// assetsDir finds kube-apiserver and etcd without building them: KUBEBUILDER_ASSETS, else the
// directory hack/k8s-binaries.sh fills (make k8s-binaries).
func assetsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "k8s-binaries.sh")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (hack/k8s-binaries.sh) not found above the working directory")
		}
		dir = parent
	}
	version := os.Getenv("KUBE_VERSION")
	if version == "" {
		version = "v1.37.2"
	}
	d := filepath.Join(dir, "bin", "k8s", version)
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			t.Fatalf("%s missing in %s: run `make k8s-binaries` (or set KUBEBUILDER_ASSETS)", b, d)
		}
	}
	return d
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The rotator against a real kube-apiserver, as the webhook's ServiceAccount with exactly the
// RBAC the chart grants (get/list/watch/update on one Secret and two named configurations),
// two replicas at once, with lifetimes short enough to see serving and CA rotations happen.
func TestRotatorAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assetsDir(t)}
	admin, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cs := kubernetes.NewForConfigOrDie(admin)
	setupObjects(ctx, t, cs)

	restricted := rest.CopyConfig(admin)
	restricted.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + testNS + ":" + testSA,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + testNS, "system:authenticated"},
	}
	// The grant really is narrow: the same identity cannot read another Secret.
	if _, err := kubernetes.NewForConfigOrDie(restricted).CoreV1().Secrets(testNS).Get(ctx, "decoy", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("restricted identity reading another Secret: err %v, want Forbidden", err)
	}

	opts := Options{
		Namespace: testNS, SecretName: testSecret, ServiceName: testService,
		MutatingWebhookName: testConfig, ValidatingWebhookName: testConfig,
		CAValidity: 30 * time.Second, CertValidity: 9 * time.Second, RolloverGrace: 2 * time.Second,
	}
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rotator logs:\n%s", logs.String())
		}
	})
	var dirs []string
	var readies []<-chan struct{}
	for i := range 2 {
		mgr, err := manager.New(restricted, manager.Options{
			Logger:                 zap.New(zap.WriteTo(&logs), zap.UseDevMode(true)).WithName(fmt.Sprintf("replica-%d", i)),
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
		})
		if err != nil {
			t.Fatal(err)
		}
		o := opts
		o.CertDir = t.TempDir()
		ready, err := Setup(mgr, o)
		if err != nil {
			t.Fatal(err)
		}
		mctx, mcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mctx) }()
		t.Cleanup(func() {
			mcancel()
			if err := <-done; err != nil {
				t.Errorf("manager %d: %v", i, err)
			}
		})
		dirs = append(dirs, o.CertDir)
		readies = append(readies, ready)
	}
	for i, r := range readies {
		select {
		case <-r:
		case <-time.After(30 * time.Second):
			t.Fatalf("replica %d not ready after 30s", i)
		}
	}

	first := waitConsistent(ctx, t, cs, dirs, nil)
	firstCA := first.active.cert

	t.Run("serving certificate renewed before expiry, same CA", func(t *testing.T) {
		m := waitConsistent(ctx, t, cs, dirs, func(m *state) error {
			if m.serving.cert.SerialNumber.Cmp(first.serving.cert.SerialNumber) == 0 {
				return errors.New("serving certificate not renewed yet")
			}
			return nil
		})
		if !m.active.cert.Equal(firstCA) {
			t.Errorf("CA changed with the serving certificate (too early): %s", m.active.cert.Subject)
		}
		if time.Now().After(first.serving.cert.NotAfter) {
			t.Errorf("renewed only after expiry (%s)", first.serving.cert.NotAfter)
		}
	})

	t.Run("caBundle removed by an upgrade is injected again", func(t *testing.T) {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, testConfig, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mwc.Webhooks[0].ClientConfig.CABundle = nil
		if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitConsistent(ctx, t, cs, dirs, nil)
	})

	t.Run("wiped Secret is refilled", func(t *testing.T) {
		s, err := cs.CoreV1().Secrets(testNS).Get(ctx, testSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = nil
		if _, err := cs.CoreV1().Secrets(testNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitConsistent(ctx, t, cs, dirs, func(m *state) error {
			if m.active.cert.Equal(firstCA) {
				return errors.New("still the first CA")
			}
			return nil
		})
	})

	t.Run("CA rotated before expiry, old CA kept in the bundle", func(t *testing.T) {
		s, err := cs.CoreV1().Secrets(testNS).Get(ctx, testSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := decode(s.Data, nil, time.Now()).active.cert
		m := waitConsistent(ctx, t, cs, dirs, func(m *state) error {
			if m.active.cert.Equal(before) {
				return errors.New("CA not rotated yet")
			}
			return nil
		})
		if !slices.ContainsFunc(m.bundle, before.Equal) || len(m.bundle) < 2 {
			t.Errorf("bundle has %d CAs, want the new and the previous one (kept until it expires)", len(m.bundle))
		}
		if time.Now().After(before.NotAfter) {
			t.Errorf("CA rotated only after expiry")
		}
	})
}

// waitConsistent waits until the Secret, both replicas' files and both caBundles agree, the
// serving certificate verifies for the Service's name against the bundle, and extra (if any)
// accepts the state. It returns that state.
func waitConsistent(ctx context.Context, t *testing.T, cs kubernetes.Interface, dirs []string, extra func(*state) error) *state {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		m, err := consistent(ctx, cs, dirs)
		if err == nil && extra != nil {
			err = extra(m)
		}
		if err == nil {
			return m
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("not consistent after 40s: %v", last)
	return nil
}

func consistent(ctx context.Context, cs kubernetes.Interface, dirs []string) (*state, error) {
	s, err := cs.CoreV1().Secrets(testNS).Get(ctx, testSecret, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	m := decode(s.Data, nil, time.Now())
	if m.serving == nil || len(m.bundle) == 0 || m.active == nil || m.next != nil {
		return nil, errors.New("Secret not filled")
	}
	for _, d := range dirs {
		crt, _ := os.ReadFile(filepath.Join(d, "tls.crt"))
		key, _ := os.ReadFile(filepath.Join(d, "tls.key"))
		if !bytes.Equal(crt, s.Data[KeyTLSCert]) || !bytes.Equal(key, s.Data[KeyTLSKey]) {
			return nil, fmt.Errorf("files in %s differ from the Secret", d)
		}
	}
	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, testConfig, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, testConfig, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for _, b := range [][]byte{mwc.Webhooks[0].ClientConfig.CABundle, vwc.Webhooks[0].ClientConfig.CABundle} {
		// The same set; the order may differ (a caBundle is rewritten only when its set changes).
		if !sameSet(parseCerts(b), parseCerts(s.Data[KeyCACert])) {
			return nil, errors.New("caBundle holds other CAs than ca.crt")
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.Data[KeyCACert])
	if _, err := m.serving.cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: testService + "." + testNS + ".svc"}); err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(s.Data[KeyTLSCert]); b == nil || !strings.Contains(string(s.Data[KeyTLSKey]), "PRIVATE KEY") {
		return nil, errors.New("PEM layout")
	}
	return m, nil
}

func setupObjects(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Secrets(testNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Secrets(testNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "decoy"}, StringData: map[string]string{"password": "x"}}, metav1.CreateOptions{}))
	path := "/mutate-v1-pod"
	none := admissionregistrationv1.SideEffectClassNone
	cc := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: testNS, Name: testService, Path: &path}}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}}
	// No namespace is opted in: the configurations exist but the apiserver never calls them.
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}}
	must(cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: testConfig},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.example.io", ClientConfig: cc, Rules: rules,
			SideEffects: &none, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nsSel}},
	}, metav1.CreateOptions{}))
	must(cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: testConfig},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "pods.example.io", ClientConfig: cc, Rules: rules,
			SideEffects: &none, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nsSel}},
	}, metav1.CreateOptions{}))
	verbs := []string{"get", "list", "watch", "update"}
	must(cs.RbacV1().Roles(testNS).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "cert-rotation"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{testSecret}, Verbs: verbs}},
	}, metav1.CreateOptions{}))
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: testNS, Name: testSA}}
	must(cs.RbacV1().RoleBindings(testNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "cert-rotation"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "cert-rotation"},
		Subjects:   subjects,
	}, metav1.CreateOptions{}))
	must(cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "pgl-cert-rotation"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
			ResourceNames: []string{testConfig}, Verbs: verbs,
		}},
	}, metav1.CreateOptions{}))
	must(cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pgl-cert-rotation"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "pgl-cert-rotation"},
		Subjects:   subjects,
	}, metav1.CreateOptions{}))
}
