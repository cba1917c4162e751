package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr/testr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/testpki"
)

// writeCert writes a serving certificate for 127.0.0.1 and returns a pool that trusts it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	ca, err := testpki.New("server-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteServing(dir); err != nil {
		t.Fatal(err)
	}
	return ca.Pool
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func readyz(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestServeOverTLS starts the real server (TLS, health probes, metrics) on loopback, posts
// an AdmissionReview for the upstream chart's pod, applies the returned JSON patch and checks
// the pod; then stops it and checks the drain: unready first, still answering, then gone.
func TestServeOverTLS(t *testing.T) {
	certDir := t.TempDir()
	o := DefaultOptions()
	o.WebhookHost = "127.0.0.1"
	o.WebhookPort = freePort(t)
	o.CertDir = certDir
	o.HealthProbeBindAddress = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	o.MetricsBindAddress = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	o.ShutdownDelay = 1500 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, testr.New(t)) }()

	// Not ready while the certificate is missing.
	time.Sleep(500 * time.Millisecond)
	if c := readyz(o.HealthProbeBindAddress); c != http.StatusInternalServerError {
		t.Fatalf("readyz before the certificate exists = %d, want 500", c)
	}
	pool := writeCert(t, certDir)
	deadline := time.Now().Add(10 * time.Second)
	for readyz(o.HealthProbeBindAddress) != http.StatusOK {
		if time.Now().After(deadline) {
			resp, err := http.Get("http://" + o.HealthProbeBindAddress + "/readyz?verbose")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				t.Fatalf("server not ready 10s after the certificate appeared: %s", b)
			}
			t.Fatalf("server not ready 10s after the certificate appeared: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate-v1-pod", o.WebhookPort)
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"pgw-","namespace":"monitoring",` +
		`"labels":{"app.kubernetes.io/name":"prometheus-pushgateway"}},"spec":{"containers":[{"name":"pushgateway",` +
		`"image":"quay.io/prometheus/pushgateway:v1.11.3","env":[{"name":"TOKEN","value":"s3cr3t"}]}],"terminationGracePeriodSeconds":30}}`)
	review := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"abc","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"monitoring","operation":"CREATE","object":` + string(pod) + `}}`)
	post := func() (*admissionv1.AdmissionReview, error) {
		resp, err := client.Post(url, "application/json", bytes.NewReader(review))
		if err != nil {
			return nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.ProtoMajor != 1 {
			return nil, fmt.Errorf("served over HTTP/%d, want HTTP/1.1 by default", resp.ProtoMajor)
		}
		var rv admissionv1.AdmissionReview
		return &rv, json.NewDecoder(resp.Body).Decode(&rv)
	}
	rv, err := post()
	if err != nil {
		t.Fatal(err)
	}
	if rv.Response.UID != "abc" || !rv.Response.Allowed || rv.Response.PatchType == nil || *rv.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response = %+v", rv.Response)
	}
	p, err := jsonpatch.DecodePatch(rv.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(pod)
	if err != nil {
		t.Fatalf("patch %s does not apply: %v", rv.Response.Patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 30 ||
		*got.Spec.TerminationGracePeriodSeconds != 45 || got.Annotations["pushgateway-lifecycle.io/status"] == "" || c.Env[0].Value != "s3cr3t" {
		t.Fatalf("patched pod = %s", out)
	}

	// The product's metrics are served next to controller-runtime's webhook metrics.
	resp, err := http.Get("http://" + o.MetricsBindAddress + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// Counters are process-wide: with -count=N they hold the sum of the runs, so look for >= 1.
	for _, want := range []string{`pushgateway_lifecycle_pods_total{outcome="injected"} [1-9]`, `controller_runtime_webhook_requests_total{code="200",webhook="/mutate-v1-pod"} [1-9]`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want[:len(want)-5]) + `[1-9]`).Match(body) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Drain: unready at once, still serving during the delay, stopped after it.
	cancel()
	time.Sleep(300 * time.Millisecond)
	if c := readyz(o.HealthProbeBindAddress); c != http.StatusInternalServerError {
		t.Errorf("readyz while draining = %d, want 500", c)
	}
	if _, err := post(); err != nil {
		t.Errorf("request during the drain delay failed: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop within 10s")
	}
}
