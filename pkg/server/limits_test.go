package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/testpki"
)

// startRun runs the server on loopback with a fresh certificate and returns its address and
// the CA pool that trusts it; it is stopped when the test ends.
func startRun(t *testing.T, edit func(*Options)) (string, *testpki.CA) {
	t.Helper()
	ca, err := testpki.New("server-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if _, err := ca.WriteServing(certDir); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.WebhookHost = "127.0.0.1"
	o.WebhookPort = freePort(t)
	o.CertDir = certDir
	o.HealthProbeBindAddress = "0"
	o.MetricsBindAddress = "0"
	o.ShutdownDelay = 0
	if edit != nil {
		edit(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, testr.New(t)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of the stop")
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", o.WebhookPort)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return addr, ca
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not listening within 15s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const podReview = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"ok",` +
	`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
	`"namespace":"monitoring","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"monitoring",` +
	`"labels":{"app.kubernetes.io/name":"prometheus-pushgateway"}},"spec":{"containers":[{"name":"pushgateway","image":"p"}]}}}}`

// TestStalledBodyCutAtDeadline: connections that send a review's headers with a 7 MiB
// Content-Length and one byte, then hold, are closed at --request-read-timeout, while
// well-behaved reviews are answered meanwhile. At ce16377 no body timeout existed: they were
// held for as long as the client liked (the review measured 40 s, then gave up).
func TestStalledBodyCutAtDeadline(t *testing.T) {
	const timeout = time.Second
	addr, ca := startRun(t, func(o *Options) { o.RequestReadTimeout = timeout })
	const n = 8
	start := time.Now()
	closedAfter := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		if _, err := fmt.Fprintf(c, "POST /mutate-v1-pod HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 7*1024*1024); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				closedAfter[i] = -1 // still open after 10 s
				return
			}
			closedAfter[i] = time.Since(start)
		})
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	answered := 0
	for time.Since(start) < timeout {
		resp, err := client.Post("https://"+addr+"/mutate-v1-pod", "application/json", strings.NewReader(podReview))
		if err != nil {
			t.Fatalf("well-behaved review while %d connections stall: %v", n, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !bytes.Contains(body, []byte(`"allowed":true`)) {
			t.Fatalf("well-behaved review while %d connections stall: %s", n, body)
		}
		answered++
	}
	wg.Wait()
	t.Logf("%d well-behaved reviews answered during the stall; stalled connections closed after %v (timeout %s)", answered, closedAfter, timeout)
	for i, d := range closedAfter {
		if d < 0 || d > timeout+3*time.Second {
			t.Errorf("stalled connection %d: closed after %v, want within %s of the %s timeout (-1: still open after 10s)", i, d, 3*time.Second, timeout)
		}
	}
}

// TestStopWhileWaitingForCertificate: a stop while the server still waits for its certificate
// is a normal shutdown: Run returns nil, at once (never ready, nothing to drain). At ce16377
// it went on to start the server and failed on the missing files.
func TestStopWhileWaitingForCertificate(t *testing.T) {
	o := DefaultOptions()
	o.WebhookHost = "127.0.0.1"
	o.WebhookPort = freePort(t)
	o.CertDir = t.TempDir() // stays empty
	o.HealthProbeBindAddress = "0"
	o.MetricsBindAddress = "0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, testr.New(t)) }()
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a stop during the certificate wait = %v, want nil", err)
		}
		t.Logf("Run returned nil %s after the stop (shutdown delay %s not spent: never ready)", time.Since(stopped).Round(time.Millisecond), o.ShutdownDelay)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the stop")
	}
}

// TestClientCAReload: the client CA file is replaced (as a mounted Secret is, by a rename)
// while the server runs; a client from the new CA is then accepted and one from the old CA
// refused, without a restart. At ce16377 the file was read once at start.
func TestClientCAReload(t *testing.T) {
	oldCA, err := testpki.New("apiserver-client-ca-old")
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := testpki.New("apiserver-client-ca-new")
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	caFile := filepath.Join(caDir, "client-ca.crt")
	if err := os.WriteFile(caFile, oldCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	addr, serving := startRun(t, func(o *Options) { o.ClientCAFile = caFile })
	oldCert, err := oldCA.ClientCert()
	if err != nil {
		t.Fatal(err)
	}
	newCert, err := newCA.ClientCert()
	if err != nil {
		t.Fatal(err)
	}
	do := func(cert tls.Certificate) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: serving.Pool, Certificates: []tls.Certificate{cert}}}}
		resp, err := c.Post("https://"+addr+"/mutate-v1-pod", "application/json", strings.NewReader(podReview))
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(body, []byte(`"allowed":true`)) {
			return fmt.Errorf("answer: %s", body)
		}
		return nil
	}
	if err := do(oldCert); err != nil {
		t.Fatalf("client of the configured CA refused: %v", err)
	}
	if err := do(newCert); err == nil {
		t.Fatal("client of a CA not yet configured was served")
	}

	tmp := caFile + ".tmp"
	if err := os.WriteFile(tmp, newCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, caFile); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	for {
		err := do(newCert)
		if err == nil {
			break
		}
		if time.Since(rotated) > 15*time.Second {
			t.Fatalf("client of the new CA still refused 15s after the file changed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new CA accepted %s after the file was replaced", time.Since(rotated).Round(time.Millisecond))
	if err := do(oldCert); err == nil {
		t.Error("client of the replaced CA still served")
	} else {
		t.Logf("old CA refused: %v", err)
	}

	// A broken file keeps the last good bundle.
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := do(newCert); err != nil {
		t.Errorf("after an invalid client CA file, the last good bundle was dropped: %v", err)
	}
}

func TestValidateReadLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{"defaults", func(*Options) {}, ""},
		{"no bound on bytes", func(o *Options) { o.MaxInflightRequestBytes = 0 }, ""},
		{"zero timeout", func(o *Options) { o.RequestReadTimeout = 0 }, "request-read-timeout"},
		{"over 30s", func(o *Options) { o.RequestReadTimeout = 31 * time.Second }, "request-read-timeout"},
		{"budget below one review", func(o *Options) { o.MaxInflightRequestBytes = 1 << 20 }, "max-inflight-request-bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.edit(&o)
			err := o.Validate().ToAggregate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestReadLimitsOverHTTP2: with --enable-http2 the read deadline is set on the stream
// (http.ResponseController supports both protocols); a review over HTTP/2 is answered.
func TestReadLimitsOverHTTP2(t *testing.T) {
	addr, ca := startRun(t, func(o *Options) { o.EnableHTTP2 = true })
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	resp, err := c.Post("https://"+addr+"/mutate-v1-pod", "application/json", strings.NewReader(podReview))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 || !bytes.Contains(body, []byte(`"allowed":true`)) {
		t.Fatalf("HTTP/%d %d: %s", resp.ProtoMajor, resp.StatusCode, body)
	}
}
