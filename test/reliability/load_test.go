package reliability

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// loadStats counts what a load run saw. A request "fails" when it got no well-formed,
// allowed answer: transport errors, non-200, 5xx in the review, malformed reviews.
type loadStats struct {
	sent, ok, failed, dropped atomic.Int64
	mu                        sync.Mutex
	errs                      map[string]int
	lat                       []time.Duration
}

func (s *loadStats) fail(err error) {
	s.failed.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160]
	}
	s.errs[msg]++
}

func (s *loadStats) record(d time.Duration) {
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
}

func (s *loadStats) percentile(p float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lat) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), s.lat...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[int(p*float64(len(l)-1))]
}

func (s *loadStats) String() string {
	s.mu.Lock()
	errs := fmt.Sprint(s.errs)
	s.mu.Unlock()
	return fmt.Sprintf("sent %d, ok %d, failed %d, not sent (generator saturated) %d, p50 %s, p99 %s, max %s, errors %s",
		s.sent.Load(), s.ok.Load(), s.failed.Load(), s.dropped.Load(),
		s.percentile(0.5).Round(time.Microsecond), s.percentile(0.99).Round(time.Microsecond), s.percentile(1).Round(time.Microsecond), errs)
}

// oneRequest posts one valid pod review and checks the answer is an allowed patch.
func oneRequest(ctx context.Context, c *http.Client, url string, st *loadStats, uid string) {
	st.sent.Add(1)
	start := time.Now()
	status, rv, err := post(ctx, c, url, "application/json", reviewJSON(uid, "Pod", "", pushgatewayPod(nil)))
	switch {
	case err != nil:
		st.fail(err)
		return
	case status != http.StatusOK:
		st.fail(fmt.Errorf("HTTP %d", status))
		return
	case rv.Response == nil || !rv.Response.Allowed || len(rv.Response.Patch) == 0:
		st.fail(errors.New("answer is not an allowed patch"))
		return
	}
	st.record(time.Since(start))
	st.ok.Add(1)
}

// closedLoop runs workers that each send back-to-back until ctx ends or stop() says so.
func closedLoop(ctx context.Context, workers int, client func() *http.Client, url string, stop func() bool) *loadStats {
	st := &loadStats{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := client()
			for i := 0; ctx.Err() == nil && (stop == nil || !stop()); i++ {
				oneRequest(context.Background(), c, url, st, fmt.Sprintf("w%d-%d", w, i))
			}
		}(w)
	}
	wg.Wait()
	return st
}

// openLoop offers rate requests per second for d, whatever the server's pace (as an API
// server does: requests arrive independently of the webhook's answers), with at most
// maxInFlight outstanding; beyond that the generator counts requests it could not send.
func openLoop(d time.Duration, rate float64, maxInFlight int, c *http.Client, url string) *loadStats {
	st := &loadStats{}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	// Ticks of 1 ms carry a batch each: a ticker at 10 kHz would itself saturate a core.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var due float64
	i := 0
	for now := range tick.C {
		if now.Sub(start) >= d {
			break
		}
		due = now.Sub(start).Seconds()*rate - float64(i)
		for ; due >= 1; due-- {
			i++
			select {
			case sem <- struct{}{}:
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					oneRequest(ctx, c, url, st, fmt.Sprintf("o%d", i))
				}(i)
			default:
				st.dropped.Add(1)
			}
		}
	}
	_ = interval
	wg.Wait()
	return st
}
