package termination

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/timeline"
)

// Config is shared by every arm of one run, so that the arms differ only in the pod spec.
type Config struct {
	// Scale divides every pod-time duration (preStop, grace, the kubelet's 2 s floor, the
	// propagation delay). Measured times (persist, restore, 503 time) are real.
	Scale float64
	// Delay is the propagation delay, in pod time: how long after the pod starts terminating
	// the Service still routes to it (EndpointSlice removal reaching kube-proxy / ingress).
	Delay     time.Duration
	Pushers   int
	PushEvery time.Duration // real
	Warmup    time.Duration // real: load before the pod is deleted
	Tail      time.Duration // real: load after the replacement is routed to
	Binary    string
	Seed      *Seeded
	WorkDir   string
}

// Real converts a pod-time duration into the duration the experiment waits.
func (c Config) Real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.Scale)
}

// Arm is one pod spec under test.
type Arm struct {
	Name string
	Term Termination
	// File names the arm's event log and picture (File.jsonl, File.svg) when they are written.
	File string
}

// Result is what one arm measured.
type Result struct {
	Arm  Arm
	Plan Plan

	Attempts   int
	AckOld     int
	AckNew     int
	RefusedOld int // refused or reset while the Service still routed to the old pod
	FailedNew  int // any failure while routed to the replacement (expected 0)
	NoEndpoint int // 503: the Service had no endpoint
	Other      int // anything else (client timeouts, 4xx from Pushgateway); expected 0
	OtherKinds map[string]int

	NoEndpointTime time.Duration
	Killed         bool
	StopTook       time.Duration // SIGTERM to exit, or to SIGKILL when Killed
	Persisted      bool          // the shutdown wrote a new persistence file
	RestoreTook    time.Duration // replacement start to /-/ready answering (loads the persisted store)
	ReadyAfter     time.Duration // replacement start to the readiness probe passing
	RefusedTime    time.Duration // SIGTERM to endpoint removal: routed to a pod that no longer accepts
	MarkerRestored bool          // the replacement restored the preloaded store
	Lost           int           // acknowledged pushes missing from the replacement
	LostAckedByNew int           // of which acknowledged by the replacement itself (expected 0)

	// Log is every event of the arm, timed from the pod's deletion: what the timeline draws.
	Log *timeline.Run
}

// Run replays one pod replacement: the old pod serves under load, is deleted, terminates as its
// spec dictates, and a replacement starts on the same persistence file (strategy Recreate).
func Run(ctx context.Context, ps *Processes, cfg Config, arm Arm) (*Result, error) {
	res := &Result{Arm: arm, Plan: PlanFor(arm.Term), OtherKinds: map[string]int{}}
	dir, err := os.MkdirTemp(cfg.WorkDir, "arm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "pushgateway.data")
	if err := fixtures.CopyFile(cfg.Seed.File, file); err != nil {
		return nil, err
	}

	old, err := ps.Start(cfg.Binary, "old", file, dir)
	if err != nil {
		return nil, err
	}
	defer old.Kill()
	readyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := old.WaitReady(readyCtx); err != nil {
		return nil, err
	}
	svc, err := NewService()
	if err != nil {
		return nil, err
	}
	defer svc.Close()
	svc.SetEndpoint(RouteOld, old.Addr)
	load := StartLoad(svc.URL, cfg.Pushers, cfg.PushEvery)
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return nil, err
	}

	// t=0: the pod is deleted. The endpoint removal and the kubelet run concurrently.
	rec := &recorder{t0: time.Now()}
	rec.add(timeline.KindDeleted, rec.t0)
	if res.Plan.SIGTERMAt > 0 {
		rec.add(timeline.KindPreStop, rec.t0)
	}
	removed := make(chan struct{})
	var removedAt time.Time
	removal := time.AfterFunc(cfg.Real(cfg.Delay), func() {
		svc.SetEndpoint(RouteNone, "")
		removedAt = time.Now()
		close(removed)
	})
	defer removal.Stop()

	before, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, cfg.Real(res.Plan.SIGTERMAt)); err != nil { // the preStop hook
		return nil, err
	}
	persist := watchPersist(file)
	termAt := time.Now()
	if err := old.Signal(syscall.SIGTERM); err != nil {
		persist.Stop()
		return nil, fmt.Errorf("SIGTERM: %w; log:\n%s", err, old.Log())
	}
	rec.add(timeline.KindSIGTERM, termAt)
	select {
	case <-old.Exited():
		res.StopTook = old.ExitAt().Sub(termAt)
		rec.add(timeline.KindExit, old.ExitAt())
	case <-time.After(cfg.Real(res.Plan.StopWindow())):
		res.Killed = true
		killAt := time.Now()
		res.StopTook = killAt.Sub(termAt)
		rec.add(timeline.KindSIGKILL, killAt)
		old.Kill()
	case <-ctx.Done():
		persist.Stop()
		return nil, ctx.Err()
	}
	if start, end := persist.Stop(); !start.IsZero() {
		if !res.Killed && end.After(old.ExitAt()) { // seen by the poll after the exit
			end = old.ExitAt()
		}
		rec.add(timeline.KindPersistStart, start)
		if !end.IsZero() {
			rec.add(timeline.KindPersistEnd, end)
		}
	}
	after, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	// Pushgateway persists into a temporary file and renames it over the old one.
	res.Persisted = !os.SameFile(before, after)

	// Recreate: the replacement starts once the old pod is gone, on the same volume.
	startNew := time.Now()
	newPod, err := ps.Start(cfg.Binary, "new", file, dir)
	if err != nil {
		return nil, err
	}
	defer newPod.Kill()
	if err := newPod.WaitReady(readyCtx); err != nil {
		return nil, err
	}
	res.RestoreTook = time.Since(startNew)
	rec.add(timeline.KindNewStart, startNew)
	rec.add(timeline.KindNewServing, startNew.Add(res.RestoreTook))
	// The kubelet probes at initialDelaySeconds and then every periodSeconds; the Pushgateway
	// stays ready once it is, so the first probe at or after RestoreTook is the one that passes.
	res.ReadyAfter = cfg.Real(arm.Term.ReadyDelay)
	if period := cfg.Real(arm.Term.ReadyPeriod); period > 0 {
		for res.ReadyAfter < res.RestoreTook {
			res.ReadyAfter += period
		}
	}
	res.ReadyAfter = max(res.ReadyAfter, res.RestoreTook)
	if err := sleep(ctx, time.Until(startNew.Add(res.ReadyAfter))); err != nil {
		return nil, err
	}
	select { // the old endpoint must be gone before the new one is the only one
	case <-removed:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	svc.SetEndpoint(RouteNew, newPod.Addr)
	res.RefusedTime = max(removedAt.Sub(termAt), 0)
	if err := sleep(ctx, cfg.Tail); err != nil {
		return nil, err
	}
	pushes := load.Stop()
	stopped = true
	rec.add(timeline.KindEnd, time.Now())
	res.NoEndpointTime = svc.NoEndpointTime()
	for _, c := range svc.Changes() {
		rec.route(c)
	}

	present, marker, err := storedInstances(ctx, newPod.Addr, cfg.Seed.Preload.Groups)
	if err != nil {
		return nil, fmt.Errorf("querying the replacement: %w; log:\n%s", err, newPod.Log())
	}
	res.MarkerRestored = marker
	for _, p := range pushes {
		rec.push(p, present[p.Instance])
		res.Attempts++
		switch {
		case p.Outcome == OutcomeAck:
			if p.Route == RouteNew {
				res.AckNew++
			} else {
				res.AckOld++
			}
			if !present[p.Instance] {
				res.Lost++
				if p.Route == RouteNew {
					res.LostAckedByNew++
				}
			}
		case p.Outcome == OutcomeNoEndpoint:
			res.NoEndpoint++
		case p.Route == RouteOld && (p.Outcome == OutcomeRefused || p.Outcome == OutcomeReset):
			res.RefusedOld++
		case p.Route == RouteNew:
			res.FailedNew++
			res.OtherKinds["new: "+p.Outcome]++
		default:
			res.Other++
			res.OtherKinds[p.Route+": "+p.Outcome]++
		}
	}
	res.Log = &timeline.Run{Arm: arm.Name, Spec: arm.Term.String(), Note: runNote(cfg), Events: rec.events}
	return res, nil
}

// storedInstances removes the preload from the replacement (so that the query stays small),
// then lists the instance labels of the pushed groups, and whether the preload marker is there.
func storedInstances(ctx context.Context, addr string, groups int) (map[string]bool, bool, error) {
	c := &http.Client{Timeout: 2 * time.Minute}
	for g := 0; g < groups; g++ {
		if err := do(ctx, c, http.MethodDelete, fmt.Sprintf("http://%s/metrics/job/%s/instance/%d", addr, preloadJob, g), nil); err != nil {
			return nil, false, err
		}
	}
	if err := syncStore(ctx, addr); err != nil {
		return nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/metrics", nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, false, fmt.Errorf("GET /api/v1/metrics: %s: %s", resp.Status, b)
	}
	var body struct {
		Data []struct {
			Labels map[string]string `json:"labels"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, false, err
	}
	present := map[string]bool{}
	marker := false
	for _, g := range body.Data {
		switch g.Labels["job"] {
		case "proof":
			present[g.Labels["instance"]] = true
		case "preload-marker":
			marker = true
		}
	}
	return present, marker, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// seconds formats a real duration for the tables.
func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Table renders the results as a Markdown table.
func Table(results []*Result) string {
	var b strings.Builder
	b.WriteString("| arm | pod spec | SIGTERM / SIGKILL at (pod time) | pushes attempted | refused/reset while old pod routed | acknowledged (old + new pod) | **acknowledged lost** | 503 no endpoint: pushes / time | time no pod accepted pushes (refused window + 503) | SIGTERM to exit | SIGKILL | shutdown persist written |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---|---|---|---|---|\n")
	for _, r := range results {
		kill := "no"
		stop := seconds(r.StopTook)
		if r.Killed {
			kill = "**yes**"
			stop = "killed after " + stop
		}
		persisted := "yes"
		if !r.Persisted {
			persisted = "**no** (file unchanged)"
		}
		floor := ""
		if r.Plan.Floored {
			floor = " (2 s floor)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s / %s%s | %d | %d | %d (%d + %d) | %d | %d / %s | %s | %s | %s | %s |\n",
			r.Arm.Name, r.Arm.Term, r.Plan.SIGTERMAt, r.Plan.SIGKILLAt, floor,
			r.Attempts, r.RefusedOld, r.AckOld+r.AckNew, r.AckOld, r.AckNew, r.Lost,
			r.NoEndpoint, seconds(r.NoEndpointTime), seconds(r.RefusedTime+r.NoEndpointTime), stop, kill, persisted)
	}
	return b.String()
}
