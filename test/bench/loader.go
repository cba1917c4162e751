package bench

// The load generator is a small one of our own on github.com/HdrHistogram/hdrhistogram-go
// rather than vegeta as a library, for two reasons:
//   - Capacity on one core. The floor answers ~40,000 req/s on one core, and the loader gets
//     exactly one core too. vegeta's attacker goes through net/http's Transport (two
//     goroutines and channel hand-offs per connection, a Result with a copy of the body per
//     hit), which costs more per request than the floor server itself, so "max" would measure
//     the loader. Here each connection is one goroutine writing a pre-encoded HTTP/1.1 request
//     on a kept-alive TLS connection and reading the response in place.
//   - Latency without coordinated omission. At fixed rates every request has a scheduled send
//     time and its latency is counted from that time, so a stalled server is charged for the
//     requests it delayed (vegeta measures from the actual send). HDR histograms give exact
//     p99.9 at microsecond resolution.
// The loader runs as a child process (this program re-executed with -loader under
// `taskset -c 0`) so that its core, its GOMAXPROCS (1, from the affinity) and its CPU use are
// its own.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// LoadSpec is one load step.
type LoadSpec struct {
	Addr string // host:port, loopback only
	Path string
	Body []byte
	// CAPEM is the CA that signed the server's certificate.
	CAPEM []byte
	// Rate in requests per second; 0 means as fast as the connections go (closed loop).
	Rate        float64
	Warmup      time.Duration
	Duration    time.Duration
	Connections int
	// Expect is a substring every response body must contain (e.g. `"patch":`).
	Expect string
}

// LoadResult is what one step measured (latencies in microseconds).
type LoadResult struct {
	Requests     int64    `json:"requests"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	Seconds      float64  `json:"seconds"`
	Achieved     float64  `json:"achieved_rps"`
	P50us        int64    `json:"p50_us"`
	P90us        int64    `json:"p90_us"`
	P99us        int64    `json:"p99_us"`
	P999us       int64    `json:"p999_us"`
	Maxus        int64    `json:"max_us"`
	// LoaderCPU is the loader's CPU use in cores during the measurement; near 1.0 means the
	// loader, not the server, set the pace.
	LoaderCPU float64 `json:"loader_cpu"`
	// Backlog is how many scheduled requests were still waiting when the step ended.
	Backlog int `json:"backlog,omitempty"`
}

type worker struct {
	spec *LoadSpec
	cfg  *tls.Config
	req  []byte
	conn net.Conn
	br   *bufio.Reader
	buf  bytes.Buffer
	hist *hdrhistogram.Histogram
	n    int64
	errs int64
	samp []string
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

func (w *worker) fail(err error) {
	w.errs++
	if len(w.samp) < 3 {
		w.samp = append(w.samp, err.Error())
	}
	if w.conn != nil {
		_ = w.conn.Close()
		w.conn = nil
	}
}

// do sends one request and reads the whole response.
func (w *worker) do() error {
	if w.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(&d, "tcp", w.spec.Addr, w.cfg)
		if err != nil {
			return err
		}
		w.conn = c
		w.br = bufio.NewReaderSize(c, 16<<10)
	}
	_ = w.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.conn.Write(w.req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return err
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, w.buf.Bytes())
	}
	if w.spec.Expect != "" && !bytes.Contains(w.buf.Bytes(), []byte(w.spec.Expect)) {
		return fmt.Errorf("response without %s: %.300s", w.spec.Expect, w.buf.Bytes())
	}
	if resp.Close {
		_ = w.conn.Close()
		w.conn = nil
	}
	return nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// RunLoad runs one step: Warmup (not recorded), then Duration (recorded).
func RunLoad(spec LoadSpec) (*LoadResult, error) {
	if host, _, err := net.SplitHostPort(spec.Addr); err != nil || (host != "127.0.0.1" && host != "::1") {
		return nil, fmt.Errorf("load only goes to loopback, not %q", spec.Addr)
	}
	if spec.Duration <= 0 || spec.Duration > 15*time.Minute || spec.Connections < 1 || spec.Connections > 256 {
		return nil, errors.New("load step out of bounds (duration 0-15m, 1-256 connections)")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(spec.CAPEM) {
		return nil, errors.New("no CA certificate")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	req := []byte("POST " + spec.Path + " HTTP/1.1\r\nHost: " + spec.Addr + "\r\nUser-Agent: pgl-bench\r\n" +
		"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: " + strconv.Itoa(len(spec.Body)) + "\r\n\r\n")
	req = append(req, spec.Body...)

	start := time.Now()
	measureFrom := start.Add(spec.Warmup)
	end := measureFrom.Add(spec.Duration)
	var cpuStart float64
	cpuOnce := sync.Once{}
	markCPU := func() { cpuOnce.Do(func() { cpuStart = cpuSeconds() }) }
	if spec.Warmup == 0 {
		markCPU()
	}

	workers := make([]*worker, spec.Connections)
	for i := range workers {
		workers[i] = &worker{spec: &spec, cfg: cfg, req: req, hist: newHist()}
	}
	var wg sync.WaitGroup
	var backlog int
	if spec.Rate > 0 {
		total := int(spec.Rate * (spec.Warmup + spec.Duration).Seconds())
		sched := make(chan time.Time, total+1)
		for _, w := range workers {
			wg.Add(1)
			go func(w *worker) {
				defer wg.Done()
				for t := range sched {
					if time.Now().After(end.Add(2 * time.Second)) {
						continue // drain without sending: the step is over
					}
					err := w.do()
					if t.Before(measureFrom) {
						if err != nil {
							w.fail(err) // warmup errors count too: the target is zero
						}
						continue
					}
					if err != nil {
						w.fail(err)
						continue
					}
					w.n++
					_ = w.hist.RecordValue(time.Since(t).Microseconds())
				}
			}(w)
		}
		interval := time.Duration(float64(time.Second) / spec.Rate)
		sent := 0
		for sent < total {
			now := time.Now()
			if !now.Before(measureFrom) {
				markCPU()
			}
			due := int(now.Sub(start) / interval)
			for ; sent < total && sent <= due; sent++ {
				sched <- start.Add(time.Duration(sent) * interval)
			}
			time.Sleep(time.Millisecond)
		}
		backlog = len(sched)
		close(sched)
	} else {
		for _, w := range workers {
			wg.Add(1)
			go func(w *worker) {
				defer wg.Done()
				for {
					t := time.Now()
					if !t.Before(end) {
						return
					}
					err := w.do()
					if t.Before(measureFrom) {
						if err != nil {
							w.fail(err)
						}
						continue
					}
					markCPU()
					if err != nil {
						w.fail(err)
						continue
					}
					w.n++
					_ = w.hist.RecordValue(time.Since(t).Microseconds())
				}
			}(w)
		}
	}
	wg.Wait()
	elapsed := time.Since(measureFrom).Seconds()
	if spec.Rate == 0 {
		elapsed = spec.Duration.Seconds()
	}
	cpu := cpuSeconds() - cpuStart

	h := newHist()
	res := &LoadResult{Seconds: spec.Duration.Seconds(), Backlog: backlog}
	for _, w := range workers {
		h.Merge(w.hist)
		res.Requests += w.n
		res.Errors += w.errs
		for _, s := range w.samp {
			if len(res.ErrorSamples) < 5 {
				res.ErrorSamples = append(res.ErrorSamples, s)
			}
		}
		if w.conn != nil {
			_ = w.conn.Close()
		}
	}
	res.Achieved = float64(res.Requests) / spec.Duration.Seconds()
	res.P50us = h.ValueAtQuantile(50)
	res.P90us = h.ValueAtQuantile(90)
	res.P99us = h.ValueAtQuantile(99)
	res.P999us = h.ValueAtQuantile(99.9)
	res.Maxus = h.Max()
	res.LoaderCPU = cpu / elapsed
	return res, nil
}
