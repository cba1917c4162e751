package harness

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BuildBinary builds ./cmd/pushgateway-lifecycle once per test process and returns its path.
// It goes to bin/test/ (git-ignored) through a temporary name and a rename, so that test
// packages running in parallel never execute a half-written file, and the Go build cache
// makes every build after the first one quick.
func BuildBinary() (string, error) {
	buildOnce.Do(func() {
		root, err := fixtures.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir := filepath.Join(root, "bin", "test")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		final := filepath.Join(dir, "pushgateway-lifecycle")
		tmp := fmt.Sprintf("%s.%d.tmp", final, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "./cmd/pushgateway-lifecycle")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			_ = os.Remove(tmp)
			buildErr = fmt.Errorf("harness: go build ./cmd/pushgateway-lifecycle: %w\n%s", err, out)
			return
		}
		if err := os.Rename(tmp, final); err != nil {
			buildErr = err
			return
		}
		buildPath = final
	})
	return buildPath, buildErr
}

// WebhookOptions for StartWebhook.
type WebhookOptions struct {
	// Binary overrides the binary (default: BuildBinary).
	Binary string
	// CertDir holds tls.crt and tls.key (default: the control plane's envtest certificate).
	CertDir string
	// PolicyFile is passed as --policy when set.
	PolicyFile string
	// Args are extra flags for `serve`.
	Args []string
	// Env is added to the server's environment (for example KUBECONFIG for --handoff).
	Env []string
	// Port for the webhook (default: a free port). Reuse a stopped server's port to restart it
	// behind the same webhook configuration.
	Port int
	// Log also receives the server's output (it is captured either way).
	Log io.Writer
	// ReadyTimeout bounds the wait for /readyz (default 60s).
	ReadyTimeout time.Duration
}

// Webhook is a running `pushgateway-lifecycle serve` on 127.0.0.1.
type Webhook struct {
	*Process
	Port        int
	MetricsPort int
	HealthPort  int
}

// URL of the webhook server for path (e.g. "/mutate-v1-pod").
func (w *Webhook) URL(path string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", w.Port, path) }

// MetricsURL is the Prometheus metrics endpoint.
func (w *Webhook) MetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", w.MetricsPort)
}

// HealthURL is the health probe endpoint for path ("/readyz", "/healthz").
func (w *Webhook) HealthURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", w.HealthPort, path)
}

// StartWebhookServer starts `pushgateway-lifecycle serve` and waits until /readyz is OK.
func StartWebhookServer(certDir string, opts WebhookOptions) (*Webhook, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = BuildBinary(); err != nil {
			return nil, err
		}
	}
	if opts.CertDir != "" {
		certDir = opts.CertDir
	}
	w := &Webhook{Port: opts.Port}
	var err error
	// FreePort releases the port it found, so two calls can return the same one (seen: metrics
	// and health on one port, the server exits "address already in use"): pick until distinct.
	used := map[int]bool{}
	if w.Port != 0 {
		used[w.Port] = true
	}
	for _, p := range []*int{&w.Port, &w.MetricsPort, &w.HealthPort} {
		for *p == 0 {
			port, err := FreePort()
			if err != nil {
				return nil, err
			}
			if !used[port] {
				*p = port
				used[port] = true
			}
		}
	}
	args := []string{"serve",
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(w.Port),
		"--cert-dir=" + certDir,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(w.MetricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(w.HealthPort),
	}
	if opts.PolicyFile != "" {
		args = append(args, "--policy="+opts.PolicyFile)
	}
	args = append(args, opts.Args...)
	if w.Process, err = StartProcess("pushgateway-lifecycle", bin, args, opts.Env, opts.Log); err != nil {
		return nil, err
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	if err := w.WaitReady(timeout); err != nil {
		_ = w.Stop(5 * time.Second)
		return nil, err
	}
	return w, nil
}

// WaitReady polls /readyz until it answers 200.
func (w *Webhook) WaitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-w.Exited():
			return fmt.Errorf("pushgateway-lifecycle serve exited before ready: %w\n%s", w.ExitErr(), tail(w.Logs(), 8<<10))
		default:
		}
		resp, err := client.Get(w.HealthURL("/readyz"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pushgateway-lifecycle serve not ready within %s:\n%s", timeout, tail(w.Logs(), 8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartWebhook starts the real server for a test with the control plane's serving certificate,
// stops it in t.Cleanup and prints its logs when the test failed.
func (cp *ControlPlane) StartWebhook(t testing.TB, opts WebhookOptions) *Webhook {
	t.Helper()
	w, err := StartWebhookServer(cp.CertDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Stop(15 * time.Second); err != nil {
			t.Errorf("stopping the webhook: %v", err)
		}
		if t.Failed() {
			t.Logf("pushgateway-lifecycle serve output (last 16 KiB):\n%s", tail(w.Logs(), 16<<10))
		}
	})
	return w
}
