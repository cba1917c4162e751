package termination

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Pod is one real Pushgateway process: what a container of the pod under test runs.
type Pod struct {
	Name    string
	Addr    string // 127.0.0.1:port
	LogPath string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{}
	exitAt  time.Time
	exitErr error
}

// Processes tracks every Pushgateway started so that a failing test still stops them all.
type Processes struct {
	mu   sync.Mutex
	pods []*Pod
}

// StopAll kills every process group that is still running.
func (ps *Processes) StopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.pods {
		p.Kill()
	}
}

// Start runs the Pushgateway binary on a free loopback port with persistence in persistFile.
// The persistence interval is long so that only the shutdown persist writes the file while an
// arm runs: that persist is the one the grace period has to cover.
func (ps *Processes) Start(bin, name, persistFile, logDir string, extra ...string) (*Pod, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Pod{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", port), exited: make(chan struct{})}
	p.LogPath = filepath.Join(logDir, name+".log")
	p.logFile, err = os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--web.listen-address=" + p.Addr,
		"--persistence.file=" + persistFile,
		"--persistence.interval=1h",
		"--log.level=info",
	}
	p.cmd = exec.Command(bin, append(args, extra...)...)
	p.cmd.Stdout = p.logFile
	p.cmd.Stderr = p.logFile
	// Its own process group, so a kill reaches everything it might spawn; and killed with the
	// test binary, which skips t.Cleanup when `go test -timeout` panics.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		return nil, err
	}
	ps.mu.Lock()
	ps.pods = append(ps.pods, p)
	ps.mu.Unlock()
	go func() {
		p.exitErr = p.cmd.Wait()
		p.exitAt = time.Now()
		p.logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Exited is closed when the process has exited.
func (p *Pod) Exited() <-chan struct{} { return p.exited }

// ExitAt is when the process exited (valid after Exited is closed).
func (p *Pod) ExitAt() time.Time { return p.exitAt }

// Signal sends sig to the process.
func (p *Pod) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL to the process group and waits for the exit; a no-op once exited.
func (p *Pod) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// Log returns the process's log (for failure messages).
func (p *Pod) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > 4000 {
		b = append([]byte("..."), b[len(b)-4000:]...)
	}
	return string(b)
}

// WaitReady polls /-/ready, as a readiness probe would (without its initial delay).
func (p *Pod) WaitReady(ctx context.Context) error {
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get("http://" + p.Addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("pushgateway %s exited before it was ready (%w); log:\n%s", p.Name, p.exitErr, p.Log())
		case <-ctx.Done():
			return fmt.Errorf("pushgateway %s not ready: %w; log:\n%s", p.Name, ctx.Err(), p.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Preload describes the store that exists before the pod is replaced. Large label values, not
// many series, give it its size: Pushgateway checks every push for consistency against the
// whole store (it gathers all of it), so a store of many small series makes every push about as
// slow as a persist, while large values cost the persist (encode + write) more than the check.
type Preload struct {
	Groups     int
	PerGroup   int
	ValueBytes int
}

// Series is the number of preloaded series.
func (pl Preload) Series() int { return pl.Groups * pl.PerGroup }

// Seeded is a persistence file holding the preload, and what writing it cost.
type Seeded struct {
	File        string
	Bytes       int64
	PersistTook time.Duration // SIGTERM to exit of the seeding Pushgateway: its shutdown persist
	Preload     Preload
}

const preloadJob = "preload"

// Seed fills a Pushgateway with the preload and stops it with SIGTERM, which makes it persist
// the store; the time from SIGTERM to exit is the persist time the grace period must cover.
// The seeding instance skips the per-push consistency check only to load faster: the file it
// persists is the same, and the pods under test run with the check on, as the chart does.
func Seed(ctx context.Context, ps *Processes, bin, dir string, pl Preload) (*Seeded, error) {
	file := filepath.Join(dir, "seed.data")
	p, err := ps.Start(bin, "seed", file, dir, "--push.disable-consistency-check")
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	if err := p.WaitReady(ctx); err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	pad := strings.Repeat("x", pl.ValueBytes)
	for g := 0; g < pl.Groups; g++ {
		var b bytes.Buffer
		for i := 0; i < pl.PerGroup; i++ {
			fmt.Fprintf(&b, "proof_preload{series=\"%d\",payload=\"%s\"} %d\n", i, pad, i)
		}
		if err := do(ctx, c, http.MethodPut, fmt.Sprintf("http://%s/metrics/job/%s/instance/%d", p.Addr, preloadJob, g), &b); err != nil {
			return nil, fmt.Errorf("preload group %d: %w", g, err)
		}
	}
	// A tiny group that survives the clean-up before verification: its presence shows that the
	// replacement restored the persisted store at all.
	if err := do(ctx, c, http.MethodPut, fmt.Sprintf("http://%s/metrics/job/preload-marker", p.Addr), strings.NewReader("proof_preload_marker 1\n")); err != nil {
		return nil, err
	}
	// Deletes and unchecked pushes are queued; a checked push returns only after the store's
	// loop has processed it, hence after everything queued before it.
	if err := syncStore(ctx, p.Addr); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return nil, err
	}
	select {
	case <-p.Exited():
	case <-time.After(5 * time.Minute):
		return nil, errors.New("seeding pushgateway did not exit within 5m of SIGTERM")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s := &Seeded{File: file, PersistTook: p.ExitAt().Sub(start), Preload: pl}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("seeding pushgateway persisted nothing: %w; log:\n%s", err, p.Log())
	}
	s.Bytes = fi.Size()
	return s, nil
}

func do(ctx context.Context, c *http.Client, method, url string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	return nil
}

func syncStore(ctx context.Context, addr string) error {
	c := &http.Client{Timeout: 2 * time.Minute}
	return do(ctx, c, http.MethodPost, "http://"+addr+"/metrics/job/proof-sync", strings.NewReader("proof_sync 1\n"))
}

// Calibrate sizes the preload so that persisting it takes about target on this machine now:
// it seeds the probe store, measures its persist time, scales the number of groups linearly
// and seeds again. Persist time depends on the CPU the machine has to spare, so a fixed size
// would make the experiment's margins depend on whatever else the machine is doing.
func Calibrate(ctx context.Context, ps *Processes, bin, dir string, probe Preload, target time.Duration, maxGroups int) (*Seeded, *Seeded, error) {
	first, err := Seed(ctx, ps, bin, dir, probe)
	if err != nil {
		return nil, nil, err
	}
	groups := int(float64(probe.Groups) * target.Seconds() / max(first.PersistTook.Seconds(), 0.001))
	sized := probe
	sized.Groups = min(max(groups, 1), maxGroups)
	second, err := Seed(ctx, ps, bin, dir, sized)
	return first, second, err
}
