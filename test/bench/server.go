package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/testpki"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// WriteCerts writes a serving certificate for 127.0.0.1 signed by a new throwaway CA into
// dir as tls.crt/tls.key and returns the CA in PEM.
func WriteCerts(dir string) ([]byte, error) {
	ca, err := testpki.New("pushgateway-lifecycle bench CA")
	if err != nil {
		return nil, err
	}
	if _, err := ca.WriteServing(dir); err != nil {
		return nil, err
	}
	return ca.PEM, nil
}

// BuildBinary builds the binary the way `make build` does (static) into dir.
func BuildBinary(root, dir string) (string, error) {
	out := filepath.Join(dir, "pushgateway-lifecycle")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/pushgateway-lifecycle")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	return out, nil
}

// BuildBenchServer builds test/bench/cmd/benchserver (the reference servers) into dir.
func BuildBenchServer(root, dir string) (string, error) {
	out := filepath.Join(dir, "benchserver")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./bench/cmd/benchserver")
	cmd.Dir = filepath.Join(root, "test") // the test module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build benchserver: %w\n%s", err, b)
	}
	return out, nil
}

// StartPinned starts `serve` (with extra args) on core cpu through taskset, so that the Go
// runtime sizes GOMAXPROCS to that one core, and waits for /readyz.
func StartPinned(bin, certDir, cpu string, extra ...string) (*harness.Webhook, error) {
	return startPinnedEnv(bin, certDir, cpu, nil, extra...)
}

// startPinnedEnv is StartPinned with env added to the server's environment (KUBECONFIG for
// --handoff).
func startPinnedEnv(bin, certDir, cpu string, env []string, extra ...string) (*harness.Webhook, error) {
	w := &harness.Webhook{}
	var err error
	for _, p := range []*int{&w.Port, &w.MetricsPort, &w.HealthPort} {
		if *p, err = harness.FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"-c", cpu, bin, "serve",
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(w.Port),
		"--cert-dir=" + certDir,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(w.MetricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(w.HealthPort),
		"--shutdown-delay=0s",
	}
	args = append(args, extra...)
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return nil, fmt.Errorf("taskset (util-linux) is needed to pin the server to one core: %w", err)
	}
	if w.Process, err = harness.StartProcess("pushgateway-lifecycle", taskset, args, env, nil); err != nil {
		return nil, err
	}
	if err := w.WaitReady(60 * time.Second); err != nil {
		_ = w.Stop(5 * time.Second)
		return nil, err
	}
	return w, nil
}

// ProcCPU is the process's user+system CPU time (from /proc/<pid>/stat).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// MetricSum adds up the samples of name whose labels contain every one of labels (e.g.
// `webhook="/mutate-v1-pod"`).
func MetricSum(url, name string, labels ...string) (float64, error) {
	body, err := httpGet(url)
	if err != nil {
		return 0, err
	}
	sum, err := metricSumText(body, name, labels...)
	if err != nil {
		return 0, fmt.Errorf("%w at %s", err, url)
	}
	return sum, nil
}

// metricSumText sums the samples of one metric in a Prometheus text exposition whose lines
// contain every given label substring.
func metricSumText(body, name string, labels ...string) (float64, error) {
	var sum float64
	found := false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%s%v not found", name, labels)
	}
	return sum, nil
}
