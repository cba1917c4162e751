package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// Identity and objects of TestCARolloverUnderLoad, apart from the chart's names so that the
// test cannot touch another test's objects in the shared control plane.
const (
	rolloverNS     = "ca-rollover"
	rolloverSecret = "rollover-certs"
	rolloverSA     = "rollover"
	// rolloverServiceName makes the serving certificate valid for "localhost" (the bare
	// Service name is one of its DNS names): the API server reaches the replicas through a
	// proxy on 127.0.0.1 by the URL https://localhost:<port>, not through a Service.
	rolloverServiceName = "localhost"
)

// TestCARolloverUnderLoad: two replicas of the real binary with --cert-rotation share one
// Secret behind one address, as the chart's ServiceAccount with the chart's RBAC (get, list,
// watch, update on the one Secret and the two named configurations). With lifetimes short
// enough to roll the CA over within the test (CA 30 s: a rollover starts 20 s after a CA is
// made; serving certificates 24 s; grace 3 s), while pods are created through the API server and a client that trusts
// only the caBundle it reads from the API server right before each handshake opens fresh TLS
// connections to both replicas, it goes through a natural CA rollover and then a wiped Secret.
// No handshake may fail, every pod must be created and mutated, and nothing may be served
// that an API server lagging by a second behind the caBundle would refuse.
func TestCARolloverUnderLoad(t *testing.T) {
	cp := controlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := cp.Clientset
	secretNS := harness.WebhookNamespace
	setupRolloverIdentity(ctx, t, cp, secretNS)

	ports := make([]int, 2)
	for i := range ports {
		var err error
		if ports[i], err = harness.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]))
	_, proxyPort, _ := net.SplitHostPort(proxy.ln.Addr().String())
	// Registered without a caBundle, as the chart does: the rotator injects it.
	cfg := harness.DefaultWebhookConfigs().PointAt("https://localhost:"+proxyPort, nil)
	if err := cp.Register(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Unregister(context.Background(), cfg) })

	args := []string{
		"--shutdown-delay=1s",
		"--cert-rotation",
		"--cert-secret-name=" + rolloverSecret,
		"--cert-service-name=" + rolloverServiceName,
		"--cert-namespace=" + secretNS,
		"--mutating-webhook-name=" + harness.ConfigName,
		"--validating-webhook-name=" + harness.ConfigName,
		"--cert-ca-validity=30s",
		"--cert-validity=24s",
		"--cert-rollover-grace=3s",
	}
	started := time.Now()
	for i, port := range ports {
		cp.StartWebhook(t, harness.WebhookOptions{CertDir: t.TempDir(), Port: port, Args: args})
		t.Logf("replica %d ready on port %d after %s", i, port, time.Since(started).Round(time.Millisecond))
	}
	if err := cp.CreateNamespace(ctx, rolloverNS, true); err != nil {
		t.Fatal(err)
	}
	if err := cp.WaitForWebhook(ctx, rolloverNS, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// Load: fresh TLS handshakes to each replica trusting only the live caBundle, and pods.
	bundles := watchBundles(ctx, t, cp)
	stop := make(chan struct{})
	hs := &handshakeStats{served: make([]atomic.Pointer[[]byte], len(ports))}
	var wg sync.WaitGroup
	for i, port := range ports {
		wg.Add(1)
		go func() { defer wg.Done(); hs.loop(ctx, cp, i, port, stop) }()
	}
	pods := createPods(cp, rolloverNS, 2, stop)
	loadStart := time.Now()

	secret := func() *corev1.Secret {
		s, err := cs.CoreV1().Secrets(secretNS).Get(ctx, rolloverSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// signing is the Secret's signing CA's key id: ca.crt starts with it when ca.key is set.
	signing := func(s *corev1.Secret) []byte {
		if len(s.Data["ca.key"]) == 0 {
			return nil
		}
		if b, _ := pem.Decode(s.Data["ca.crt"]); b != nil {
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				return c.SubjectKeyId
			}
		}
		return nil
	}
	// waitRollover waits until the Secret's signing CA is none of before and every replica
	// has served a certificate from it, and reports the phases' timings.
	waitRollover := func(name string, before [][]byte, timeout time.Duration) ([]byte, bool) {
		t.Helper()
		start := time.Now()
		var published, promoted time.Time
		for time.Since(start) < timeout {
			s := secret()
			if published.IsZero() && len(s.Data["ca-next.key"]) > 0 {
				published = time.Now()
			}
			ski := signing(s)
			fresh := ski != nil
			for _, b := range before {
				fresh = fresh && !bytes.Equal(ski, b)
			}
			if fresh {
				if promoted.IsZero() {
					promoted = time.Now()
				}
				all := true
				for i := range ports {
					all = all && hs.servedFrom(i, ski)
				}
				if all {
					if published.IsZero() {
						published = promoted // no ca-next.key seen: the CA signed at once
					}
					t.Logf("%s: new CA published at +%s (load time), signing at +%s, served by both replicas at +%s: %s from publication to served",
						name, published.Sub(loadStart).Round(100*time.Millisecond), promoted.Sub(loadStart).Round(100*time.Millisecond),
						time.Since(loadStart).Round(100*time.Millisecond), time.Since(published).Round(100*time.Millisecond))
					return ski, true
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("%s: no new signing CA served by both replicas within %s", name, timeout)
		return nil, false
	}

	first := signing(secret())
	second, ok := waitRollover("natural rollover (CA in its last third)", [][]byte{first}, 40*time.Second)
	if ok {
		time.Sleep(2 * time.Second)
	}
	s := secret()
	s.Data = nil
	if _, err := cs.CoreV1().Secrets(secretNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Secret wiped at +%s", time.Since(loadStart).Round(100*time.Millisecond))
	waitRollover("wiped Secret", [][]byte{first, second}, 30*time.Second)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // the pod workers' last calls
	loadFor := time.Since(loadStart)

	t.Logf("over %s of load: %d TLS handshakes trusting only the live caBundle, %d failed; %d pods created, %d mutated, %d failed (%d caBundle reads failed and were retried)",
		loadFor.Round(100*time.Millisecond), hs.attempts.Load(), hs.failed.Load(), pods.created.Load(), pods.mutated.Load(), pods.failed.Load(), hs.readErrs.Load())
	if hs.failed.Load() > 0 {
		t.Errorf("%d of %d handshakes failed; first errors:\n%s", hs.failed.Load(), hs.attempts.Load(), strings.Join(hs.firstErrs(), "\n"))
	}
	// An HA control plane's API servers each learn a caBundle change from their own informer:
	// what a replica serves must also verify against the caBundle of a moment ago.
	const lag = time.Second
	versions := bundles()
	lagging, examples := untrustedByLaggingAPIServer(hs.seen, versions, lag)
	t.Logf("%d caBundle versions; %d of %d served certificates would have been refused by an API server lagging by %s",
		len(versions), lagging, len(hs.seen), lag)
	if lagging > 0 {
		t.Errorf("served before trusted everywhere:\n%s", strings.Join(examples, "\n"))
	}
	if hs.attempts.Load() < 100 {
		t.Errorf("only %d handshakes: the client loop did not run", hs.attempts.Load())
	}
	if pods.failed.Load() > 0 || pods.created.Load() == 0 {
		t.Errorf("pods: %d created, %d failed: %v", pods.created.Load(), pods.failed.Load(), pods.errs)
	}
	if pods.mutated.Load() != pods.created.Load() {
		t.Errorf("%d of %d pods came back unmutated (the API server could not reach a replica: failurePolicy Ignore let them through)",
			pods.created.Load()-pods.mutated.Load(), pods.created.Load())
	}
}

// handshakeStats is the client that trusts only the live caBundle.
type handshakeStats struct {
	attempts, failed, readErrs atomic.Int64
	mu                         sync.Mutex
	errs                       []string
	// served is, per replica, the AuthorityKeyId of the last certificate it presented.
	served []atomic.Pointer[[]byte]
	// seen is every certificate presented in a successful handshake, and when.
	seen []servedAt
}

type servedAt struct {
	at   time.Time
	leaf *x509.Certificate
}

// bundleVersion is a caBundle of the MutatingWebhookConfiguration and when this test saw
// it arrive (a moment after it was written).
type bundleVersion struct {
	from   time.Time
	bundle []byte
}

// watchBundles records every caBundle version of the MutatingWebhookConfiguration until ctx ends.
func watchBundles(ctx context.Context, t *testing.T, cp *harness.ControlPlane) func() []bundleVersion {
	t.Helper()
	api := cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	var mu sync.Mutex
	var versions []bundleVersion
	add := func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		if n := len(versions); n == 0 || !bytes.Equal(versions[n-1].bundle, b) {
			versions = append(versions, bundleVersion{from: time.Now(), bundle: b})
		}
	}
	w, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + harness.ConfigName})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			if m, ok := ev.Object.(*admissionv1.MutatingWebhookConfiguration); ok {
				add(m.Webhooks[0].ClientConfig.CABundle)
			}
		}
	}()
	t.Cleanup(w.Stop)
	return func() []bundleVersion {
		mu.Lock()
		defer mu.Unlock()
		return append([]bundleVersion(nil), versions...)
	}
}

// untrustedByLaggingAPIServer counts the served certificates that a caBundle in effect
// within lag before the handshake does not verify: what an API server whose informer is lag
// behind would have refused.
func untrustedByLaggingAPIServer(seen []servedAt, versions []bundleVersion, lag time.Duration) (int, []string) {
	n := 0
	var examples []string
	for _, s := range seen {
		for i, v := range versions {
			inEffect := !v.from.After(s.at) && (i == len(versions)-1 || versions[i+1].from.After(s.at.Add(-lag)))
			if !inEffect {
				continue
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(v.bundle)
			if _, err := s.leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: rolloverServiceName, CurrentTime: s.at}); err != nil {
				n++
				if len(examples) < 5 {
					examples = append(examples, fmt.Sprintf("%s: served certificate from %q, caBundle of %s: %v",
						s.at.Format("15:04:05.000"), s.leaf.Issuer.CommonName, v.from.Format("15:04:05.000"), err))
				}
				break
			}
		}
	}
	return n, examples
}

// loop reads the MutatingWebhookConfiguration's caBundle from the API server and opens a
// fresh TLS connection to the replica trusting only it, until stop.
func (h *handshakeStats) loop(ctx context.Context, cp *harness.ControlPlane, replica, port int, stop <-chan struct{}) {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		mwc, err := cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, harness.ConfigName, metav1.GetOptions{})
		if err != nil {
			h.readErrs.Add(1)
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle)
		h.attempts.Add(1)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: pool, ServerName: rolloverServiceName, MinVersion: tls.VersionTLS12})
		if err != nil {
			h.failed.Add(1)
			h.mu.Lock()
			h.errs = append(h.errs, fmt.Sprintf("%s replica %d: %v", time.Now().Format("15:04:05.000"), replica, err))
			h.mu.Unlock()
			continue
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		h.served[replica].Store(&leaf.AuthorityKeyId)
		h.mu.Lock()
		h.seen = append(h.seen, servedAt{at: time.Now(), leaf: leaf})
		h.mu.Unlock()
		_ = conn.Close()
	}
}

func (h *handshakeStats) servedFrom(replica int, ski []byte) bool {
	p := h.served[replica].Load()
	return p != nil && bytes.Equal(*p, ski)
}

func (h *handshakeStats) firstErrs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := append([]string(nil), h.errs...)
	sort.Strings(e)
	if len(e) > 10 {
		e = append(e[:10], fmt.Sprintf("... %d more", len(h.errs)-10))
	}
	return e
}

// setupRolloverIdentity creates the empty Secret, a ServiceAccount identity with the chart's
// rotator RBAC, and points KUBECONFIG (read by the binaries this test starts) at a kubeconfig
// that impersonates it.
func setupRolloverIdentity(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns string) {
	t.Helper()
	cs := cp.Clientset
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.CreateNamespace(ctx, ns, false); err != nil {
		t.Fatal(err)
	}
	must(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: rolloverSecret}}, metav1.CreateOptions{}))
	verbs := []string{"get", "list", "watch", "update"}
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: rolloverSA}}
	must(cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "rollover-cert-rotation"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{rolloverSecret}, Verbs: verbs}},
	}, metav1.CreateOptions{}))
	must(cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "rollover-cert-rotation"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "rollover-cert-rotation"},
		Subjects:   subjects,
	}, metav1.CreateOptions{}))
	must(cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "rollover-cert-rotation"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{harness.ConfigName}, Verbs: verbs},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, ResourceNames: []string{harness.ConfigName}, Verbs: verbs},
		},
	}, metav1.CreateOptions{}))
	must(cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "rollover-cert-rotation"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "rollover-cert-rotation"},
		Subjects:   subjects,
	}, metav1.CreateOptions{}))
	t.Cleanup(func() {
		bg := context.Background()
		_ = cs.RbacV1().ClusterRoleBindings().Delete(bg, "rollover-cert-rotation", metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(bg, "rollover-cert-rotation", metav1.DeleteOptions{})
		_ = cs.RbacV1().RoleBindings(ns).Delete(bg, "rollover-cert-rotation", metav1.DeleteOptions{})
		_ = cs.RbacV1().Roles(ns).Delete(bg, "rollover-cert-rotation", metav1.DeleteOptions{})
		_ = cs.CoreV1().Secrets(ns).Delete(bg, rolloverSecret, metav1.DeleteOptions{})
	})

	kc, err := clientcmd.LoadFromFile(cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + ns + ":" + rolloverSA
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
}
