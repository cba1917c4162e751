package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	pglwebhook "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

// TestServeHandlers: Serve runs the handlers it is given, and only them, on the webhook
// server over TLS, and rejects invalid options as Run does.
func TestServeHandlers(t *testing.T) {
	certDir := t.TempDir()
	pool := writeCert(t, certDir)
	o := DefaultOptions()
	o.WebhookHost, o.WebhookPort, o.CertDir = "127.0.0.1", freePort(t), certDir
	o.HealthProbeBindAddress, o.MetricsBindAddress, o.ShutdownDelay = "0", "0", 0

	bad := o
	bad.WebhookPort = 0
	if err := Serve(context.Background(), bad, nil, testr.New(t)); err == nil {
		t.Error("Serve accepted webhook port 0")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, o, map[string]http.Handler{"/bench": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "reference")
		})}, testr.New(t))
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path string) (int, string, error) {
		resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d%s", o.WebhookPort, path), "application/json", nil)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body, err := get("/bench")
		if err == nil {
			if code != http.StatusOK || body != "reference" {
				t.Errorf("/bench: %d %q; want 200 \"reference\"", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not answering within 15s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, err := get(pglwebhook.PathMutatePods); err != nil || code != http.StatusNotFound {
		t.Errorf("%s: %d, %v; want 404 (only the given handlers are served)", pglwebhook.PathMutatePods, code, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("Serve did not return within 30s of the stop")
	}
}
