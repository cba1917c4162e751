package termination

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Push outcomes.
const (
	OutcomeAck        = "ack"        // 2xx: the client considers the metrics delivered
	OutcomeNoEndpoint = "noendpoint" // 503 from the Service: no pod to route to
	OutcomeRefused    = "refused"    // connection refused by the routed pod
	OutcomeReset      = "reset"      // connection reset / closed mid-request by the routed pod
)

// Push is one logged push.
type Push struct {
	Pusher, Seq int
	Instance    string // the grouping key's instance label: unique per push
	Start, End  time.Time
	Route       string
	Outcome     string
}

// Load runs pushers that each push a distinct series, one after another, through the Service.
type Load struct {
	url   string
	every time.Duration
	stop  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	pushes []Push
}

// StartLoad starts n pushers, each pushing at most once per `every`.
func StartLoad(serviceURL string, n int, every time.Duration) *Load {
	l := &Load{url: serviceURL, every: every, stop: make(chan struct{})}
	// Pushes can wait behind the store's serial consistency check; the timeout only bounds a
	// stuck test, it is far above any push latency seen.
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := 0; i < n; i++ {
		l.wg.Add(1)
		go func(id int) {
			defer l.wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				next := time.Now().Add(every)
				l.record(l.push(client, id, seq))
				select {
				case <-l.stop:
					return
				case <-time.After(time.Until(next)):
				}
			}
		}(i)
	}
	return l
}

func (l *Load) push(c *http.Client, id, seq int) Push {
	p := Push{Pusher: id, Seq: seq, Instance: fmt.Sprintf("p%d-s%d", id, seq), Start: time.Now()}
	defer func() { p.End = time.Now() }()
	resp, err := c.Post(l.url+"/metrics/job/proof/instance/"+p.Instance, "text/plain; version=0.0.4",
		strings.NewReader(fmt.Sprintf("proof_push{pusher=\"%d\"} %d\n", id, seq)))
	if err != nil {
		// The Service itself is local and always up; this is the client's own timeout.
		p.Outcome = "client error: " + err.Error()
		p.End = time.Now()
		return p
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.End = time.Now()
	p.Route = resp.Header.Get(headerRoute)
	switch {
	case resp.StatusCode/100 == 2:
		p.Outcome = OutcomeAck
	case resp.StatusCode == http.StatusServiceUnavailable && p.Route == RouteNone:
		p.Outcome = OutcomeNoEndpoint
	case resp.StatusCode == http.StatusBadGateway && resp.Header.Get(headerError) != "":
		p.Outcome = resp.Header.Get(headerError)
	default:
		p.Outcome = fmt.Sprintf("http %d", resp.StatusCode)
	}
	return p
}

func (l *Load) record(p Push) {
	l.mu.Lock()
	l.pushes = append(l.pushes, p)
	l.mu.Unlock()
}

// Stop lets in-flight pushes finish, stops the pushers and returns the log.
func (l *Load) Stop() []Push {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Push(nil), l.pushes...)
}
