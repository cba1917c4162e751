package reliability

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// rrProxy is a round-robin TCP proxy on 127.0.0.1, standing in for a Service with two
// endpoints. Like kube-proxy once the endpoint is removed, it skips a backend that refuses
// connections; connections already open to a backend that dies are lost with it.
type rrProxy struct {
	ln       net.Listener
	backends []string
	next     atomic.Int64
	perConn  []atomic.Int64
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, backends ...string) *rrProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rrProxy{ln: ln, backends: backends, perConn: make([]atomic.Int64, len(backends))}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *rrProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *rrProxy) handle(c net.Conn) {
	defer func() { _ = c.Close() }()
	var b net.Conn
	for try := 0; try < len(p.backends); try++ {
		i := int(p.next.Add(1)) % len(p.backends)
		var err error
		if b, err = net.DialTimeout("tcp", p.backends[i], time.Second); err == nil {
			p.perConn[i].Add(1)
			break
		}
	}
	if b == nil {
		return
	}
	defer func() { _ = b.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
}

// TestReplicaLoss registers two real servers behind one address with the API server, kills
// one (SIGKILL: no drain) while pods are being created, and checks that no creation fails
// and that, once the dead endpoint is skipped, every pod is mutated again.
func TestReplicaLoss(t *testing.T) {
	cp := controlPlane(t)
	a := cp.StartWebhook(t, harness.WebhookOptions{})
	b := cp.StartWebhook(t, harness.WebhookOptions{})
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", a.Port), fmt.Sprintf("127.0.0.1:%d", b.Port))
	register(t, cp, "replica-loss", "https://"+proxy.ln.Addr().String(), cp.CAData)

	stop := make(chan struct{})
	st := createPods(cp, "replica-loss", 4, stop)
	time.Sleep(3 * time.Second)
	before := st.created.Load()
	killedAt := time.Now()
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Exited()
	time.Sleep(5 * time.Second)
	close(stop)
	time.Sleep(2 * time.Second)
	t.Logf("pods created: %d before the kill, %d in total (%d mutated), failed %d; connections per replica %d/%d",
		before, st.created.Load(), st.mutated.Load(), st.failed.Load(), proxy.perConn[0].Load(), proxy.perConn[1].Load())
	if st.failed.Load() > 0 {
		t.Errorf("pod creations failed: %v", st.errs)
	}
	if st.created.Load() <= before {
		t.Error("no pod created after the kill")
	}
	if lu := st.lastUnmutated.Load(); lu != 0 {
		t.Logf("last unmutated pod %s after the kill (connections lost with the dead replica, let through by failurePolicy Ignore)",
			time.Unix(0, lu).Sub(killedAt).Round(time.Millisecond))
		if time.Unix(0, lu).Sub(killedAt) > 3*time.Second {
			t.Errorf("pods still unmutated %s after the kill: the surviving replica did not take over", time.Unix(0, lu).Sub(killedAt))
		}
	}
	healthy(t, &server{Webhook: b})
}

// TestEarlyValidation applies a Deployment whose pod template has a bad annotation with
// kubectl through the real API server: with onInvalid: warn kubectl prints the warning
// and the Deployment is created; after the policy file is switched to reject (hot reload,
// no restart) the same apply is denied with the same message.
func TestEarlyValidation(t *testing.T) {
	cp := controlPlane(t)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("onInvalid: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := cp.StartWebhook(t, harness.WebhookOptions{PolicyFile: policyFile})
	const ns = "early-validation"
	register(t, cp, ns, strings.TrimSuffix(w.URL(""), "/"), cp.CAData)

	deployment := func(name string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ` + name + `
  namespace: ` + ns + `
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: prometheus-pushgateway}
  template:
    metadata:
      labels: {app.kubernetes.io/name: prometheus-pushgateway}
      annotations:
        pushgateway-lifecycle.io/pre-stop-sleep: "30 seconds"
    spec:
      containers:
      - name: pushgateway
        image: quay.io/prometheus/pushgateway:v1.11.3
`
	}
	ctx := context.Background()
	apply := func(name string, extra ...string) (string, string, error) {
		return cp.Kubectl(ctx, strings.NewReader(deployment(name)), append([]string{"apply", "-f", "-"}, extra...)...)
	}
	// The validating configuration reaches the API server's informer a moment after the
	// mutating one that WaitForWebhook probed: retry the dry run until the warning shows.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, dryStderr, _ := apply("pgw-warn", "--dry-run=server")
		if strings.Contains(dryStderr, "Warning") || time.Now().After(deadline) {
			break
		}
	}
	stdout, stderr, err := apply("pgw-warn")
	t.Logf("warn: err=%v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	if err != nil {
		t.Fatalf("kubectl apply failed with onInvalid: warn: %v", err)
	}
	for _, want := range []string{"Warning:", "pushgateway-lifecycle.io/pre-stop-sleep", `"30 seconds"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl's stderr does not show %q", want)
		}
	}
	if _, err := cp.Clientset.AppsV1().Deployments(ns).Get(ctx, "pgw-warn", metav1.GetOptions{}); err != nil {
		t.Errorf("the Deployment was not created: %v", err)
	}

	if err := os.WriteFile(policyFile, []byte("onInvalid: reject\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		stdout, stderr, err = apply("pgw-reject")
		if err != nil || time.Now().After(deadline) {
			break
		}
		// The reload has not landed yet and the Deployment went through: remove it, retry.
		_, _, _ = cp.Kubectl(ctx, nil, "delete", "deployment", "-n", ns, "pgw-reject", "--wait=false")
	}
	t.Logf("reject: err=%v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	if err == nil {
		t.Fatal("kubectl apply succeeded with onInvalid: reject")
	}
	for _, want := range []string{"denied", "pushgateway-lifecycle.io/pre-stop-sleep", `"30 seconds"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl's error does not show %q", want)
		}
	}
}

// TestHungServerFailsOpen freezes the server (SIGSTOP: it accepts connections in the kernel
// but never answers, the worst case for a caller) while pods are created through the API
// server: the webhook's 2 s timeout and failurePolicy Ignore let every pod through; after
// SIGCONT pods are mutated again.
func TestHungServerFailsOpen(t *testing.T) {
	cp := controlPlane(t)
	w := cp.StartWebhook(t, harness.WebhookOptions{})
	const ns = "hung-server"
	register(t, cp, ns, strings.TrimSuffix(w.URL(""), "/"), cp.CAData)
	if err := w.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	st := createPods(cp, ns, 4, stop)
	time.Sleep(6 * time.Second)
	close(stop)
	time.Sleep(3 * time.Second) // the last calls wait out the webhook timeout
	if err := w.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("server frozen: %d pods created (%d mutated), %d failed", st.created.Load(), st.mutated.Load(), st.failed.Load())
	if st.failed.Load() > 0 || st.created.Load() == 0 {
		t.Errorf("pod creations failed while the webhook hung: %v", st.errs)
	}
	if st.mutated.Load() > 0 {
		t.Errorf("%d pods mutated by a frozen server", st.mutated.Load())
	}
	if err := cp.WaitForWebhook(context.Background(), ns, 30*time.Second); err != nil {
		t.Fatalf("after SIGCONT: %v", err)
	}
}
