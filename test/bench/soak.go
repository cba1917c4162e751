package bench

import (
	"fmt"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// Soak is a long fixed-rate run against the webhook.
type Soak struct {
	Minutes        float64     `json:"minutes"`
	Rate           float64     `json:"rate"`
	Load           *LoadResult `json:"load"`
	RSSStartMiB    float64     `json:"rss_start_mib"`
	RSSEndMiB      float64     `json:"rss_end_mib"`
	PeakRSSMiB     float64     `json:"peak_rss_mib"`
	GoroutineStart float64     `json:"goroutines_start"`
	GoroutineEnd   float64     `json:"goroutines_end"`
	// Samples are RSS (MiB) and goroutines every minute.
	Samples []SoakSample `json:"samples"`
}

// SoakSample is one observation during the soak.
type SoakSample struct {
	AtSeconds  float64 `json:"at_s"`
	RSSMiB     float64 `json:"rss_mib"`
	Goroutines float64 `json:"goroutines"`
}

// RunSoak runs rate req/s for d against the webhook on core 1 (loader on core 0), sampling
// its RSS and go_goroutines every minute.
func RunSoak(o DirectOptions, rate float64, d time.Duration, log func(string, ...any)) (*Soak, error) {
	w, err := StartPinned(o.Binary, o.CertDir, "1")
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop(10 * time.Second) }()
	sample := func(at time.Duration) (SoakSample, error) {
		rss, _, err := harness.ProcMemKiB(w.Pid())
		if err != nil {
			return SoakSample{}, err
		}
		g, err := harness.MetricValue(w.MetricsURL(), "go_goroutines")
		return SoakSample{at.Seconds(), float64(rss) / 1024, g}, err
	}
	spec := LoadSpec{Addr: fmt.Sprintf("127.0.0.1:%d", w.Port), Path: harness.MutatePodPath, Body: o.Body, CAPEM: o.CAPEM,
		Rate: rate, Warmup: 10 * time.Second, Duration: d, Connections: 16, Expect: `"patch":"`}
	type out struct {
		r   *LoadResult
		err error
	}
	done := make(chan out, 1)
	start := time.Now()
	go func() {
		r, err := RunLoader(o.Loader, spec)
		done <- out{r, err}
	}()
	s := &Soak{Minutes: d.Minutes(), Rate: rate}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	// The first sample is taken after the warmup, once the server has its working set.
	first := time.After(spec.Warmup)
	for {
		select {
		case <-first:
			sm, err := sample(time.Since(start))
			if err != nil {
				return nil, err
			}
			s.Samples = append(s.Samples, sm)
			s.RSSStartMiB, s.GoroutineStart = sm.RSSMiB, sm.Goroutines
		case <-tick.C:
			sm, err := sample(time.Since(start))
			if err != nil {
				return nil, err
			}
			s.Samples = append(s.Samples, sm)
			log("  soak %4.0fs: RSS %.1f MiB, goroutines %.0f", sm.AtSeconds, sm.RSSMiB, sm.Goroutines)
		case r := <-done:
			if r.err != nil {
				return nil, r.err
			}
			sm, err := sample(time.Since(start))
			if err != nil {
				return nil, err
			}
			s.Samples = append(s.Samples, sm)
			s.RSSEndMiB, s.GoroutineEnd = sm.RSSMiB, sm.Goroutines
			_, hwm, _ := harness.ProcMemKiB(w.Pid())
			s.PeakRSSMiB = float64(hwm) / 1024
			s.Load = r.r
			return s, nil
		}
	}
}
