package reliability

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// servedSerial makes a fresh handshake and returns the serial of the certificate served.
func servedSerial(t *testing.T, s *server) int64 {
	t.Helper()
	st, err := handshake(s, tlsClient(s, tls.VersionTLS13, tls.VersionTLS13))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return st.PeerCertificates[0].SerialNumber.Int64()
}

// TestCertRotationUnderLoad replaces tls.crt/tls.key (atomic renames, as a Secret volume
// update does) three times under load: new handshakes get the new certificate, no request
// fails, the process is the same.
func TestCertRotationUnderLoad(t *testing.T) {
	s := startServer(t, "")
	pid := s.Pid()
	var done atomic.Bool
	resultCh := make(chan *loadStats, 2)
	url := s.URL(webhook.PathMutatePods)
	// Half the workers keep their connections, half handshake for every request, so that
	// handshakes happen while the files are being swapped.
	go func() {
		resultCh <- closedLoop(context.Background(), 4, func() *http.Client { return s.client(1) }, url, done.Load)
	}()
	go func() {
		resultCh <- closedLoop(context.Background(), 4, func() *http.Client {
			c := s.client(1)
			c.Transport.(*http.Transport).DisableKeepAlives = true
			return c
		}, url, done.Load)
	}()
	time.Sleep(500 * time.Millisecond)
	for round := 0; round < 3; round++ {
		want := s.pki.writeServing(t, s.certDir)
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := servedSerial(t, s)
			if got == want {
				t.Logf("rotation %d: serial %d served after the swap", round+1, got)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rotation %d: still serving serial %d, want %d", round+1, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
	}
	done.Store(true)
	for i := 0; i < 2; i++ {
		st := <-resultCh
		t.Logf("load: %s", st)
		if st.failed.Load() > 0 || st.ok.Load() == 0 {
			t.Errorf("requests failed during rotation: %s", st)
		}
	}
	if s.Pid() != pid {
		t.Fatal("the server restarted")
	}
	select {
	case <-s.Exited():
		t.Fatal("the server exited")
	default:
	}
}

// TestWaitsForCertificate starts the server on an empty certificate directory: it stays
// unready and serves no TLS until the files appear, then turns ready without a restart.
func TestWaitsForCertificate(t *testing.T) {
	bin, err := harness.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	dir := t.TempDir()
	w := &harness.Webhook{}
	for _, port := range []*int{&w.Port, &w.MetricsPort, &w.HealthPort} {
		if *port, err = harness.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	w.Process, err = harness.StartProcess("pushgateway-lifecycle", bin, []string{"serve",
		"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(w.Port), "--cert-dir=" + dir,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(w.MetricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(w.HealthPort)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
	s := &server{Webhook: w, pki: p, certDir: dir}

	// Unready for 3 s, checked every 100 ms, once the probe server is up.
	var probes, unready int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(w.HealthURL("/readyz"))
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		probes++
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("ready without a certificate: %s", body)
		}
		unready++
		if _, err := handshake(s, tlsClient(s, tls.VersionTLS13, tls.VersionTLS13)); err == nil {
			t.Fatal("serving TLS without a certificate")
		}
	}
	if unready == 0 {
		t.Fatalf("the probe endpoint never answered:\n%s", w.Logs())
	}
	t.Logf("%d probes, all unready, no TLS served", probes)
	if !strings.Contains(w.Logs(), "waiting for the serving certificate") {
		t.Errorf("no log line says what it waits for:\n%s", w.Logs())
	}
	p.writeServing(t, dir)
	start := time.Now()
	if err := w.WaitReady(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("ready %s after the files appeared", time.Since(start).Round(time.Millisecond))
	status, rv, err := post(context.Background(), s.client(1), s.URL(webhook.PathMutatePods), "application/json", reviewJSON("late", "Pod", "", pushgatewayPod(nil)))
	if err != nil || status != 200 || !rv.Response.Allowed {
		t.Fatalf("after the certificate appeared: %d %v", status, err)
	}
}

// slowBody delivers a review over d, so the request is in flight across a moment.
type slowBody struct {
	data  []byte
	pos   int
	delay time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.pos >= len(b.data) {
		return 0, io.EOF
	}
	time.Sleep(b.delay)
	n := copy(p[:min(len(p), 64)], b.data[b.pos:])
	b.pos += n
	return n, nil
}

// TestGracefulShutdownUnderLoad sends SIGTERM during steady load. A client here behaves as
// the API server behind a Service: it stops sending new requests once /readyz turns false
// (the endpoint leaves the Service); every request it did send must be answered, including
// one whose body is still being uploaded when the drain delay ends; the process exits
// within shutdown-delay plus a grace margin.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	const delay = 2 * time.Second
	s := startServer(t, "", "--shutdown-delay="+delay.String())
	url := s.URL(webhook.PathMutatePods)
	var unready atomic.Bool
	var unreadyAt atomic.Int64
	go func() {
		for !unready.Load() {
			resp, err := http.Get(s.HealthURL("/readyz"))
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					unreadyAt.Store(time.Now().UnixNano())
					unready.Store(true)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	loadCh := make(chan *loadStats, 1)
	go func() {
		loadCh <- closedLoop(context.Background(), 6, func() *http.Client { return s.client(1) }, url, unready.Load)
	}()
	time.Sleep(time.Second)

	// The slow request starts before SIGTERM and ends after the drain delay.
	body := reviewJSON("slow", "Pod", "", pushgatewayPod(nil))
	slowDone := make(chan error, 1)
	go func() {
		per := (delay + 1500*time.Millisecond) / time.Duration(len(body)/64+1)
		req, _ := http.NewRequest(http.MethodPost, url, &slowBody{data: body, delay: per})
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		resp, err := s.client(1).Do(req)
		if err != nil {
			slowDone <- err
			return
		}
		data, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(data), `"allowed":true`) {
			slowDone <- fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, data)
			return
		}
		slowDone <- nil
	}()
	time.Sleep(300 * time.Millisecond)

	sigAt := time.Now()
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitedAt time.Time
	select {
	case <-s.Exited():
		exitedAt = time.Now()
	case <-time.After(delay + 15*time.Second):
		t.Fatalf("still running %s after SIGTERM", delay+15*time.Second)
	}
	st := <-loadCh
	t.Logf("load: %s", st)
	if err := <-slowDone; err != nil {
		t.Errorf("the request in flight across the drain failed: %v", err)
	}
	if !unready.Load() {
		t.Fatal("/readyz never turned false")
	}
	ua := time.Unix(0, unreadyAt.Load())
	t.Logf("unready %s after SIGTERM, exited %s after SIGTERM (shutdown-delay %s), exit: %v",
		ua.Sub(sigAt).Round(time.Millisecond), exitedAt.Sub(sigAt).Round(time.Millisecond), delay, s.ExitErr())
	if ua.Sub(sigAt) > delay/2 {
		t.Errorf("readiness turned false only %s after SIGTERM", ua.Sub(sigAt))
	}
	if exitedAt.Sub(sigAt) < delay {
		t.Errorf("exited %s after SIGTERM, before the shutdown delay of %s", exitedAt.Sub(sigAt), delay)
	}
	if st.failed.Load() > 0 || st.ok.Load() == 0 {
		t.Errorf("requests failed during the drain: %s", st)
	}
	if err := s.ExitErr(); err != nil {
		t.Errorf("exit status: %v", err)
	}
}
