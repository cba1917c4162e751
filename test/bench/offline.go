package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
)

// Offline is `pushgateway-lifecycle mutate` on a stream of Deployments.
type Offline struct {
	// Tool is "mutate", or "kubectl" for `kubectl apply --dry-run=client -f` of the same file
	// (the reference a user already waits for; it needs an API server for discovery and each
	// object's live state).
	Tool        string  `json:"tool"`
	Deployments int     `json:"deployments"`
	WallMs      float64 `json:"wall_ms"` // median of the runs
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	OutputBytes int     `json:"output_bytes"`
	// Input is the YAML stream measured (not in the JSON).
	Input string `json:"-"`
}

// RunOffline writes n copies of the upstream chart's Deployment (distinct names) as one YAML
// stream and times `mutate -f` on it, runs times, keeping the median wall time and the
// largest peak RSS (timeRuns).
func RunOffline(bin, dir string, n, runs int) (*Offline, error) {
	d, err := podgen.UpstreamDeployment()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for i := 0; i < n; i++ {
		c := d.DeepCopy()
		c.Name = d.Name + "-" + strconv.Itoa(i)
		b, err := yaml.Marshal(c)
		if err != nil {
			return nil, err
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	in := filepath.Join(dir, fmt.Sprintf("deployments-%d.yaml", n))
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	res := &Offline{Tool: "mutate", Deployments: n, Input: in}
	wall, peak, outBytes, err := timeRuns([]string{bin, "mutate", "-f", in}, runs)
	if err != nil {
		return nil, fmt.Errorf("mutate on %d deployments: %w", n, err)
	}
	res.WallMs, res.PeakRSSMiB, res.OutputBytes = ms(wall), peak, outBytes
	if res.OutputBytes <= len(buf.Bytes()) {
		return nil, fmt.Errorf("mutate wrote %d bytes for %d input bytes: nothing was added", res.OutputBytes, buf.Len())
	}
	return res, nil
}

// timeRuns runs argv runs times and returns the median wall time, the largest peak RSS and
// the last run's output size. The peak RSS comes from GNU time (fork, then exec) when it is
// installed: a child started by Go (vfork with a shared address space) inherits this
// process's RSS high-water mark in its own ru_maxrss, so wait4's figure, the fallback, is an
// upper bound that may report the benchmark's memory rather than the command's.
func timeRuns(argv []string, runs int) (time.Duration, float64, int, error) {
	gnuTime, _ := exec.LookPath("/usr/bin/time")
	var walls []time.Duration
	var peak float64
	var outBytes int
	for r := 0; r < runs; r++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		if gnuTime != "" {
			cmd = exec.Command(gnuTime, append([]string{"-f", "maxrss-kib=%M"}, argv...)...)
		}
		var out countWriter
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.SysProcAttr = childAttr()
		t := time.Now()
		err := cmd.Run()
		wall := time.Since(t)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%w\n%s", err, stderr.String())
		}
		walls = append(walls, wall)
		if gnuTime != "" {
			_, kib, found := strings.Cut(stderr.String(), "maxrss-kib=")
			v, err := strconv.ParseFloat(strings.TrimSpace(kib), 64)
			if !found || err != nil {
				return 0, 0, 0, fmt.Errorf("no peak RSS from %s: %q", gnuTime, stderr.String())
			}
			peak = max(peak, v/1024)
		} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, float64(ru.Maxrss)/1024) // Linux reports ru_maxrss in KiB
		}
		outBytes = out.n
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	return walls[len(walls)/2], peak, outBytes, nil
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// RunKubectlDryRun times `kubectl apply --dry-run=client -f input` against the API server of
// kubeconfig, runs times (median wall, largest peak RSS through GNU time when installed), for
// the n Deployments of input.
func RunKubectlDryRun(kubectl, kubeconfig, input string, n, runs int) (*Offline, error) {
	res := &Offline{Tool: "kubectl", Deployments: n, Input: input}
	wall, peak, outBytes, err := timeRuns([]string{kubectl, "--kubeconfig=" + kubeconfig, "apply", "--dry-run=client", "-f", input}, runs)
	if err != nil {
		return nil, fmt.Errorf("kubectl apply --dry-run=client on %d deployments: %w", n, err)
	}
	res.WallMs, res.PeakRSSMiB, res.OutputBytes = ms(wall), peak, outBytes
	return res, nil
}
