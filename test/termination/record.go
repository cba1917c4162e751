package termination

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/timeline"
)

// persistWatch sees the shutdown persist from outside the process: Pushgateway's persist()
// encodes the store into a temporary file named <file>.in_progress.<random> and renames it over
// <file> when it is complete (storage/diskmetricstore.go). The temporary file appearing is the
// persist starting; its disappearance while the persistence file changed is the persist done; a
// temporary file left behind after SIGKILL is a persist cut short.
type persistWatch struct {
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	start, end time.Time
}

// persistPoll is fine enough for persists of tenths of seconds and more (the short form's
// store takes a few tenths, the full-scale one seconds) and costs a directory read of three files.
const persistPoll = 2 * time.Millisecond

func watchPersist(file string) *persistWatch {
	w := &persistWatch{stop: make(chan struct{}), done: make(chan struct{})}
	dir, prefix := filepath.Dir(file), filepath.Base(file)+".in_progress."
	go func() {
		defer close(w.done)
		tick := time.NewTicker(persistPoll)
		defer tick.Stop()
		poll := func() {
			entries, err := os.ReadDir(dir)
			now := time.Now()
			if err != nil {
				return
			}
			seen := false
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), prefix) {
					seen = true
				}
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			switch {
			case seen && w.start.IsZero():
				w.start = now
			case !seen && !w.start.IsZero() && w.end.IsZero():
				w.end = now
			}
		}
		for {
			poll()
			select {
			case <-w.stop:
				poll() // the rename may have happened since the last tick, just before the exit
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Stop ends the watch (after the process exited or was killed) and returns what it saw: zero
// times for what it did not see.
func (w *persistWatch) Stop() (start, end time.Time) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.start, w.end
}

// recorder collects one arm's events, timed from the pod's deletion.
type recorder struct {
	t0     time.Time
	events []timeline.Event
}

func (r *recorder) at(t time.Time) float64 { return t.Sub(r.t0).Seconds() }

func (r *recorder) add(kind timeline.Kind, t time.Time) {
	r.events = append(r.events, timeline.Event{Kind: kind, T: r.at(t)})
}

func (r *recorder) route(c RouteChange) {
	r.events = append(r.events, timeline.Event{Kind: timeline.KindRoute, T: r.at(c.At), Route: c.Route})
}

// push records one push with its fate; present says whether the replacement has it.
func (r *recorder) push(p Push, present bool) {
	r.events = append(r.events, timeline.Event{
		Kind: timeline.KindPush, T: r.at(p.Start), D: p.End.Sub(p.Start).Seconds(), Pusher: p.Pusher, Fate: fate(p, present),
	})
}

// fate classifies a push the way Run counts it, so that the picture and the tables agree.
func fate(p Push, present bool) timeline.Fate {
	switch {
	case p.Outcome == OutcomeAck && !present:
		return timeline.FateLost
	case p.Outcome == OutcomeAck && p.Route == RouteNew:
		return timeline.FateAckNew
	case p.Outcome == OutcomeAck:
		return timeline.FateAckOld
	case p.Outcome == OutcomeNoEndpoint:
		return timeline.FateNoEndpoint
	case p.Route == RouteOld && (p.Outcome == OutcomeRefused || p.Outcome == OutcomeReset):
		return timeline.FateRefused
	default:
		return timeline.FateOther
	}
}

// runNote is the header's line on the conditions of the run.
func runNote(cfg Config) string {
	if cfg.Scale == 1 {
		return fmt.Sprintf("real time; propagation delay %s; %d clients pushing, each at most every %s", cfg.Delay, cfg.Pushers, cfg.PushEvery)
	}
	return fmt.Sprintf("pod time divided by %g; propagation delay %s; %d clients pushing, each at most every %s", cfg.Scale, cfg.Delay, cfg.Pushers, cfg.PushEvery)
}
