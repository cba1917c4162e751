package webhook

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// TestStalledBodyCostsWhatArrived: a review that announces MaxRequestBytes and sends one byte
// must cost about the pre-size, not the announced length (at ce16377 the buffer grew to the
// Content-Length before reading: 7 MiB per request).
func TestStalledBodyCostsWhatArrived(t *testing.T) {
	h := &PodMutator{Policy: StaticPolicy{P: policy.Default()}, Log: logr.Discard()}
	serveOnce := func() uint64 {
		req := httptest.NewRequest(http.MethodPost, PathMutatePods, strings.NewReader("{"))
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = MaxRequestBytes
		rec := httptest.NewRecorder()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		h.ServeHTTP(rec, req)
		runtime.ReadMemStats(&m1)
		if !strings.Contains(rec.Body.String(), `"allowed":false`) {
			t.Fatalf("answer to a truncated review: %s", rec.Body.String())
		}
		return m1.TotalAlloc - m0.TotalAlloc
	}
	serveOnce() // warm up the pool and lazily built state
	var worst uint64
	for range 5 {
		worst = max(worst, serveOnce())
	}
	t.Logf("a review announcing %d bytes and sending 1 allocated at most %d bytes", MaxRequestBytes, worst)
	if worst > 2*PresizeMax {
		t.Errorf("a stalled review announcing %d bytes allocated %d bytes, want <= %d: the Content-Length is a claim, not memory paid for",
			MaxRequestBytes, worst, 2*PresizeMax)
	}
}

// rawPost opens a plain TCP connection to srv and sends the headers of a review that announces
// declared bytes, then the given part of the body (in the background: the server may stop
// reading it); it returns the connection.
func rawPost(t *testing.T, srv *httptest.Server, declared int, part []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", PathMutatePods, declared); err != nil {
		t.Fatal(err)
	}
	if len(part) > 0 {
		go func() { _, _ = c.Write(part) }()
	}
	return c
}

// untilClosed reads the connection to its end and returns the HTTP status line seen (if any)
// and when the server closed it.
func untilClosed(t *testing.T, c net.Conn, limit time.Duration) (string, time.Time) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	data, err := io.ReadAll(c)
	// A reset is a close too: the server closes with unread body bytes in its socket.
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %s: %v (read %q)", limit, err, data)
	}
	line, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
	return string(line), time.Now()
}

// TestReadTimeoutCutsStalledBody: a body that stops arriving is cut at Limits.ReadTimeout and
// its connection closed, while the same server keeps answering well-behaved reviews.
func TestReadTimeoutCutsStalledBody(t *testing.T) {
	h := &PodMutator{Policy: StaticPolicy{P: policy.Default()}, Log: logr.Discard()}
	const timeout = 500 * time.Millisecond
	srv := httptest.NewServer(Limits{ReadTimeout: timeout}.Wrap(h))
	defer srv.Close()

	start := time.Now()
	c := rawPost(t, srv, MaxRequestBytes, []byte("{"))
	// A well-behaved review meanwhile is answered.
	resp, err := http.Post(srv.URL+PathMutatePods, "application/json", bytes.NewReader(reviewFor(t, "ok")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `"allowed":true`) {
		t.Fatalf("well-behaved review while another stalls: %s", body)
	}
	status, closed := untilClosed(t, c, 10*time.Second)
	took := closed.Sub(start)
	t.Logf("stalled body: %q, connection closed after %s (timeout %s)", status, took.Round(time.Millisecond), timeout)
	if took < timeout {
		t.Errorf("closed after %s, before the %s timeout", took, timeout)
	}
	if took > timeout+3*time.Second {
		t.Errorf("closed after %s, long after the %s timeout", took, timeout)
	}
}

// TestInflightBytesBound: with the budget taken by one large body that stalls, a second large
// body is refused with HTTP 503 once its deadline passes (so that the API server applies
// failurePolicy), small reviews keep being answered, and the budget is free again afterwards.
func TestInflightBytesBound(t *testing.T) {
	h := &PodMutator{Policy: StaticPolicy{P: policy.Default()}, Log: logr.Discard()}
	const timeout = 2 * time.Second
	srv := httptest.NewServer(Limits{ReadTimeout: timeout, InflightBytes: MinInflightBytes}.Wrap(h))
	defer srv.Close()

	// second's deadline comes first; its body arrives once first holds its full buffer, so it
	// waits for budget until its own deadline, 0.5 s before first's ends.
	almost := bytes.Repeat([]byte(" "), MaxRequestBytes-1)
	second := rawPost(t, srv, MaxRequestBytes, nil)
	time.Sleep(500 * time.Millisecond)
	first := rawPost(t, srv, MaxRequestBytes, almost) // holds MaxRequestBytes+1 of the budget
	time.Sleep(500 * time.Millisecond)
	go func() { _, _ = second.Write(almost) }()

	resp, err := http.Post(srv.URL+PathMutatePods, "application/json", bytes.NewReader(reviewFor(t, "small")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `"allowed":true`) {
		t.Fatalf("small review while the budget is taken: %s", body)
	}

	s1, _ := untilClosed(t, first, 10*time.Second)
	s2, _ := untilClosed(t, second, 10*time.Second)
	t.Logf("first (within budget, stalled): %q; second (over budget): %q", s1, s2)
	if !strings.Contains(s2, "503") {
		t.Errorf("the request over the in-flight budget got %q, want HTTP 503", s2)
	}
	if !strings.Contains(s1, "200") {
		t.Errorf("the stalled request within budget got %q, want its timeout answered in a review (HTTP 200)", s1)
	}
	// The budget is free again: a full-size body now goes through to the decoder.
	c := rawPost(t, srv, MaxRequestBytes, append(almost, ' '))
	s3, _ := untilClosed(t, c, 10*time.Second)
	if !strings.Contains(s3, "200") {
		t.Errorf("a full-size body after the stall got %q, want HTTP 200", s3)
	}
}

func reviewFor(t *testing.T, uid string) []byte {
	t.Helper()
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `",` +
		`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"monitoring","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"monitoring",` +
		`"labels":{"app.kubernetes.io/name":"prometheus-pushgateway"}},"spec":{"containers":[{"name":"pushgateway","image":"p"}]}}}}`)
}
