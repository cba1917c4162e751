package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process in its own process group, with its output captured so that a
// failing test can show it.
type Process struct {
	Name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

// StartProcess starts path with args in its own process group. Output goes to an in-memory
// buffer (see Logs) and, when tee is not nil, to tee as well.
func StartProcess(name, path string, args []string, env []string, tee io.Writer) (*Process, error) {
	p := &Process{Name: name, logs: &syncBuffer{}, done: make(chan struct{})}
	var out io.Writer = p.logs
	if tee != nil {
		out = io.MultiWriter(p.logs, tee)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), env...)
	// Own process group: a Ctrl-C on the terminal reaches the test (which then stops us in
	// order), and Stop can signal everything the process forked. Pdeathsig kills the child if
	// the test binary dies without running its cleanups (for example on a go test timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	watch(cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		unwatch(cmd.Process.Pid)
		close(p.done)
	}()
	return p, nil
}

// Pid of the process (and of its process group).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Logs returns everything the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// ExitErr is the result of Wait once Exited is closed.
func (p *Process) ExitErr() error { <-p.done; return p.err }

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop sends SIGTERM to the process group and SIGKILL after grace. It returns once the
// process has exited; calling it again is harmless.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s after SIGTERM: killed", p.Name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.cmd.Process.Pid)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The watchdog covers what Pdeathsig cannot: envtest starts etcd and kube-apiserver itself, in
// their own process groups, and they would outlive a test binary killed by `go test -timeout`
// or a SIGKILL. A tiny shell process polls for our death and then kills every process group
// listed in a file that we keep current.
var (
	watchMu   sync.Mutex
	watchFile string
	watchPid  int
	watched   = map[int]bool{}
	// watchedDirs are removed by the watchdog after it killed the processes.
	watchedDirs = map[string]bool{}
)

func watch(pid int) {
	watchMu.Lock()
	defer watchMu.Unlock()
	if watchFile == "" {
		if err := startWatchdog(); err != nil {
			fmt.Fprintf(os.Stderr, "harness: watchdog not started (processes may outlive a killed test): %v\n", err)
			watchFile = "-"
		}
	}
	watched[pid] = true
	writeWatchFile()
}

// watchDirs has the watchdog remove these directories (scratch space of processes it kills)
// if this process dies without cleaning up; forgetDirs is the normal path's counterpart.
func watchDirs(dirs ...string) {
	watchMu.Lock()
	defer watchMu.Unlock()
	for _, d := range dirs {
		if d != "" {
			watchedDirs[d] = true
		}
	}
	writeWatchFile()
}

func forgetDirs(dirs ...string) {
	watchMu.Lock()
	defer watchMu.Unlock()
	for _, d := range dirs {
		delete(watchedDirs, d)
	}
	writeWatchFile()
}

func unwatch(pid int) {
	watchMu.Lock()
	defer watchMu.Unlock()
	delete(watched, pid)
	writeWatchFile()
}

func writeWatchFile() {
	if watchFile == "-" {
		return
	}
	var sb strings.Builder
	for pid := range watched {
		sb.WriteString(strconv.Itoa(pid))
		sb.WriteByte('\n')
	}
	tmp := watchFile + ".tmp"
	if os.WriteFile(tmp, []byte(sb.String()), 0o600) == nil {
		_ = os.Rename(tmp, watchFile)
	}
	var db strings.Builder
	for d := range watchedDirs {
		db.WriteString(d)
		db.WriteByte('\n')
	}
	dirs := filepath.Join(filepath.Dir(watchFile), "dirs")
	if os.WriteFile(dirs+".tmp", []byte(db.String()), 0o600) == nil {
		_ = os.Rename(dirs+".tmp", dirs)
	}
}

func startWatchdog() error {
	dir, err := os.MkdirTemp("", "harness-watchdog-")
	if err != nil {
		return err
	}
	watchFile = filepath.Join(dir, "pids")
	if err := os.WriteFile(watchFile, nil, 0o600); err != nil {
		return err
	}
	script := `while kill -0 "$1" 2>/dev/null; do sleep 1; done
for p in $(cat "$2" 2>/dev/null); do kill -9 -- "-$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
while IFS= read -r d; do [ -n "$d" ] && rm -rf -- "$d"; done < "$3/dirs" 2>/dev/null
rm -rf "$3"`
	cmd := exec.Command("/bin/sh", "-c", script, "watchdog", strconv.Itoa(os.Getpid()), watchFile, dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	watchPid = cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	return nil
}

// unwatchAll forgets pids registered by watchChildren once their owner has stopped them.
func unwatchAll(pids []int) {
	for _, pid := range pids {
		unwatch(pid)
	}
}

// isLiveChild reports whether pid is a running (not zombie) child of this process.
func isLiveChild(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid == os.Getpid()
}

// watchChildren registers every current child of this process that is not yet watched (used
// after envtest has started etcd and kube-apiserver, whose pids envtest does not expose) and
// returns the pids it added.
func watchChildren() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	me := os.Getpid()
	var errs []error
	var added []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the last ')' are: state ppid ...; the command name may contain spaces.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			errs = append(errs, fmt.Errorf("bad /proc/%d/stat", pid))
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == me {
			watchMu.Lock()
			isNew := !watched[pid] && pid != watchPid
			watchMu.Unlock()
			if isNew {
				watch(pid)
				added = append(added, pid)
			}
		}
	}
	return added, errors.Join(errs...)
}

// ProcMemKiB returns VmRSS and VmHWM (peak RSS) in KiB.
func ProcMemKiB(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &hwm
		default:
			continue
		}
		fs := strings.Fields(string(line))
		if len(fs) >= 2 {
			*dst, _ = strconv.ParseInt(fs[1], 10, 64)
		}
	}
	return rss, hwm, nil
}

// MetricValue reads one unlabelled sample (e.g. go_goroutines) from a Prometheus text endpoint.
func MetricValue(url, name string) (float64, error) {
	body, err := getBody(url)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name+" ")), 64)
		}
	}
	return 0, fmt.Errorf("%s not found at %s", name, url)
}

func getBody(url string) (string, error) {
	resp, err := http.Get(url) //nolint:gosec,noctx // a local test server's /metrics
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
