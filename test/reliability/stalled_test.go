package reliability

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pglserver "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/server"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// chartMemoryLimitKiB is the chart's memory limit (values.yaml resources.limits.memory: 128Mi):
// a replica above it is OOM-killed.
const chartMemoryLimitKiB = 128 << 10

// TestStalledClients is the attack of issue 16 against the real binary with its default
// limits: connections send the headers of a review announcing a 7 MiB body, then part of the
// body, and hold. Two forms:
//
//   - one-byte: 64 connections send one byte. At ce16377 each pinned a 7 MiB buffer and none
//     was ever closed (16 connections: +112 MiB heap after 40 s, RSS 29 -> 143 MiB).
//   - full-body: 16 connections send all but the last byte (7 MiB each, 112 MiB in all), which
//     no pre-sizing rule can refuse to buffer: the in-flight byte budget bounds them.
//
// In both, every stalled connection must be closed within the read timeout (plus slack), the
// process must stay under the chart's memory limit, and well-behaved reviews sent meanwhile
// with the chart's 2 s webhook timeout must all be answered.
//
// STALL_INFLIGHT_BYTES=0 runs the full-body form without the budget, to measure what it is for
// (the memory assertions are then reported, not enforced).
func TestStalledClients(t *testing.T) {
	if testing.Short() {
		t.Skip("holds connections for the 10 s read timeout (-short)")
	}
	almost := make([]byte, webhook.MaxRequestBytes-1)
	for i := range almost {
		almost[i] = ' '
	}
	for _, tc := range []struct {
		name  string
		conns int
		part  []byte
	}{
		{"one-byte", 64, []byte("{")},
		{"full-body", 16, almost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			enforce := true
			if v, ok := os.LookupEnv("STALL_INFLIGHT_BYTES"); ok && tc.name == "full-body" {
				args = append(args, "--max-inflight-request-bytes="+v)
				enforce = v != "0"
			}
			stalledAttack(t, startServer(t, "", args...), tc.conns, tc.part, enforce)
		})
	}
}

func stalledAttack(t *testing.T, s *server, conns int, part []byte, enforce bool) {
	timeout := pglserver.DefaultRequestReadTimeout
	url := s.URL(webhook.PathMutatePods)
	good := func() *http.Client {
		c := s.client(1)
		c.Timeout = 2 * time.Second // the chart's webhook.timeoutSeconds
		return c
	}
	// Warm up, so that the baseline holds what any serving process holds.
	if st := closedLoop(context.Background(), 2, good, url, stopAfter(200)); st.ok.Load() != 200 {
		t.Fatalf("warm-up: %s", st)
	}
	rss0, _, _ := harness.ProcMemKiB(s.Pid())
	heap0 := metric(t, s.MetricsURL(), "go_memstats_heap_inuse_bytes")

	// The well-behaved traffic runs through the whole attack.
	var stopGood atomic.Bool
	goodDone := make(chan *loadStats, 1)
	go func() { goodDone <- closedLoop(context.Background(), 2, good, url, stopGood.Load) }()

	addr := fmt.Sprintf("127.0.0.1:%d", s.Port)
	start := time.Now()
	closedAfter := make([]time.Duration, conns)
	status := make([]string, conns)
	var wg sync.WaitGroup
	for i := range conns {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: s.pki.Pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		sent := time.Now()
		if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			webhook.PathMutatePods, webhook.MaxRequestBytes); err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = c.Write(part) }() // the server may stop reading it
		wg.Go(func() {
			// Hold: read until the server answers and closes, at most 3 read timeouts.
			_ = c.SetReadDeadline(sent.Add(3 * timeout))
			var first [12]byte
			n, _ := io.ReadFull(c, first[:])
			status[i] = string(first[:n])
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				closedAfter[i] = -1
				return
			}
			closedAfter[i] = time.Since(sent)
		})
	}
	attacked := time.Since(start)

	// Sample memory while the connections are held.
	var rssMax int64
	var heapMax float64
	sampling, stopSampling := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampling)
		for {
			if r, _, _ := harness.ProcMemKiB(s.Pid()); r > rssMax {
				rssMax = r
			}
			if h, err := heapInuse(s.MetricsURL()); err == nil && h > heapMax {
				heapMax = h
			}
			select {
			case <-time.After(250 * time.Millisecond):
			case <-stopSampling:
				return
			}
		}
	}()
	wg.Wait()
	held := time.Since(start)
	close(stopSampling)
	<-sampling
	stopGood.Store(true)
	st := <-goodDone
	_, peak, _ := harness.ProcMemKiB(s.Pid())
	rss1, _, _ := harness.ProcMemKiB(s.Pid())
	heap1 := metric(t, s.MetricsURL(), "go_memstats_heap_inuse_bytes")

	// A connection is closed either at its read timeout (its answer, a review with the timeout,
	// is HTTP 200) or, when it found no room in the in-flight budget, after BudgetWait (HTTP 503).
	type span struct{ first, last time.Duration }
	closed := map[string]*span{}
	open := 0
	for i, d := range closedAfter {
		if d < 0 {
			open++
			continue
		}
		sp := closed[status[i]]
		if sp == nil {
			sp = &span{d, d}
			closed[status[i]] = sp
		}
		sp.first, sp.last = min(sp.first, d), max(sp.last, d)
	}
	var spans []string
	for k, sp := range closed {
		spans = append(spans, fmt.Sprintf("%q x%d after %s .. %s", k, countOf(status, k), sp.first.Round(time.Millisecond), sp.last.Round(time.Millisecond)))
	}
	t.Logf("%d stalled connections (%d body bytes each) opened in %s; all closed after %s (read timeout %s, budget wait %s): %v; still open: %d",
		conns, len(part), attacked.Round(time.Millisecond), held.Round(time.Millisecond), timeout, webhook.BudgetWait, spans, open)
	t.Logf("RSS %d -> max %d MiB (VmHWM %d MiB), %d MiB after; heap in use %.0f -> max %.0f MiB, %.0f MiB after",
		rss0>>10, rssMax>>10, peak>>10, rss1>>10, heap0/(1<<20), heapMax/(1<<20), heap1/(1<<20))
	t.Logf("well-behaved reviews meanwhile (2 s timeout): %s", st)

	if open > 0 {
		t.Errorf("%d of %d stalled connections still open %s after their headers", open, conns, 3*timeout)
	}
	for k, sp := range closed {
		lo, hi := timeout-time.Second, timeout+5*time.Second
		if k == "HTTP/1.1 503" {
			lo, hi = webhook.BudgetWait-100*time.Millisecond, webhook.BudgetWait+5*time.Second
		}
		if sp.first < lo || sp.last > hi {
			t.Errorf("stalled connections answered %q were closed %s .. %s after their headers, want within %s .. %s", k, sp.first, sp.last, lo, hi)
		}
	}
	if st.ok.Load() == 0 || st.failed.Load() > 0 {
		t.Errorf("well-behaved reviews during the attack: %s, want all answered", st)
	}
	if !enforce {
		t.Logf("no in-flight budget: memory reported, not enforced")
		return
	}
	if peak >= chartMemoryLimitKiB {
		t.Errorf("peak RSS %d MiB reaches the chart's %d MiB limit", peak>>10, chartMemoryLimitKiB>>10)
	}
	perConn := (rssMax - rss0) / int64(conns)
	if len(part) == 1 && perConn > 512 {
		t.Errorf("a stalled connection that sent one byte costs %d KiB of RSS, want well under the 7 MiB it announced", perConn)
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// stopAfter stops a closed loop after n requests in all.
func stopAfter(n int64) func() bool {
	var sent atomic.Int64
	return func() bool { return sent.Add(1) > n }
}

// heapInuse reads go_memstats_heap_inuse_bytes without failing the test (it runs in a
// sampling goroutine).
func heapInuse(url string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	const name = "\ngo_memstats_heap_inuse_bytes "
	i := strings.Index(string(body), name)
	if i < 0 {
		return 0, errors.New("no go_memstats_heap_inuse_bytes")
	}
	line := string(body[i+len(name):])
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	return strconv.ParseFloat(strings.TrimSpace(line), 64)
}
