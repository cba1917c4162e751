// Package reliability proves that the webhook keeps answering under hostile input, load and
// faults, fails open, and exposes nothing. Every test runs the real binary (built once) on
// 127.0.0.1 over TLS; the end-to-end ones go through a real kube-apiserver (test/harness).
// Short forms run in `go test`; -long runs the full-length overload (60 s).
package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/testpki"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

var long = flag.Bool("long", false, "run the long forms (60 s overload)")

// sharedCP is one control plane for every end-to-end test of the package: starting
// kube-apiserver and etcd costs tens of seconds on a shared machine.
var (
	cpOnce sync.Once
	cp     *harness.ControlPlane
	cpErr  error
)

func controlPlane(t *testing.T) *harness.ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a control plane (-short)")
	}
	cpOnce.Do(func() { cp, cpErr = harness.Start(harness.Options{}) })
	if cpErr != nil {
		t.Fatal(cpErr)
	}
	return cp
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if cp != nil {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}
	os.Exit(code)
}

// pki is the shared test CA (internal/testkit/testpki) with test-failing helpers.
type pki struct{ *testpki.CA }

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca, err := testpki.New("reliability-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca}
}

// writeServing rotates the serving pair in dir (atomically) and returns its serial.
func (p *pki) writeServing(t testing.TB, dir string) int64 {
	t.Helper()
	serial, err := p.WriteServing(dir)
	if err != nil {
		t.Fatal(err)
	}
	return serial
}

// clientCert is a client certificate signed by the CA.
func (p *pki) clientCert(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := p.ClientCert()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// server is a running serve process with its own certificate directory and CA.
type server struct {
	*harness.Webhook
	pki     *pki
	certDir string
}

// startServer starts the real binary with a fresh CA, serving certificate and policy.
func startServer(t *testing.T, policyYAML string, args ...string) *server {
	t.Helper()
	p := newPKI(t)
	dir := t.TempDir()
	p.writeServing(t, dir)
	opts := harness.WebhookOptions{CertDir: dir, Args: append([]string{"--shutdown-delay=1s"}, args...)}
	if policyYAML != "" {
		opts.PolicyFile = filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(opts.PolicyFile, []byte(policyYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := harness.StartWebhookServer(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("server output (last 8 KiB):\n%s", tailString(w.Logs(), 8<<10))
		}
	})
	return &server{Webhook: w, pki: p, certDir: dir}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// client is an HTTP/1.1 client trusting the server's CA.
func (s *server) client(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: s.pki.Pool, MinVersion: tls.VersionTLS12},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// reviewJSON builds the AdmissionReview the API server sends for a pod CREATE.
func reviewJSON(uid, kind, group string, object any) []byte {
	obj, _ := json.Marshal(object)
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":%q,`+
		`"kind":{"group":%q,"version":"v1","kind":%q},"resource":{"group":%q,"version":"v1","resource":"pods"},`+
		`"namespace":"monitoring","operation":"CREATE","object":%s}}`, uid, group, kind, group, obj))
}

// pushgatewayPod is the upstream chart's pod shape, with extra annotations.
func pushgatewayPod(ann map[string]string) map[string]any {
	md := map[string]any{
		"generateName": "pgw-prometheus-pushgateway-",
		"namespace":    "monitoring",
		"labels":       map[string]string{"app.kubernetes.io/name": "prometheus-pushgateway", "app.kubernetes.io/instance": "pgw"},
	}
	if ann != nil {
		md["annotations"] = ann
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod", "metadata": md,
		"spec": map[string]any{"containers": []map[string]any{{"name": "pushgateway", "image": "quay.io/prometheus/pushgateway:v1.11.3"}}},
	}
}

// post sends body and decodes the AdmissionReview answer.
func post(ctx context.Context, c *http.Client, url, contentType string, body []byte) (int, *admissionv1.AdmissionReview, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &rv); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer is not an AdmissionReview: %w: %.300s", err, data)
	}
	return resp.StatusCode, &rv, nil
}

// metric reads one unlabelled sample from the server's Prometheus endpoint.
func metric(t testing.TB, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name)), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found at %s", name, url)
	return 0
}

// goroutinesSettled reads go_goroutines until it stops falling (idle connections and
// handlers finish asynchronously) and returns the last value.
func goroutinesSettled(t testing.TB, s *server, atMost float64) float64 {
	t.Helper()
	var g float64
	for i := 0; i < 50; i++ {
		g = metric(t, s.MetricsURL(), "go_goroutines")
		if g <= atMost {
			return g
		}
		time.Sleep(100 * time.Millisecond)
	}
	return g
}

// healthy asserts /healthz and /readyz answer 200.
func healthy(t testing.TB, s *server) {
	t.Helper()
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.HealthURL(p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", p, resp.StatusCode)
		}
	}
}
