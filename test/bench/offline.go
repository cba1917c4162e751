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
// largest peak RSS (from wait4's rusage).
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
	var walls []time.Duration
	res := &Offline{Tool: "mutate", Deployments: n, Input: in}
	// The peak RSS comes from GNU time (fork, then exec) when it is installed: a child started
	// by Go (vfork with a shared address space) inherits this process's RSS high-water mark in
	// its own ru_maxrss, so wait4's figure would report the benchmark's memory, not mutate's.
	gnuTime, _ := exec.LookPath("/usr/bin/time")
	for r := 0; r < runs; r++ {
		cmd := exec.Command(bin, "mutate", "-f", in)
		if gnuTime != "" {
			cmd = exec.Command(gnuTime, "-f", "maxrss-kib=%M", bin, "mutate", "-f", in)
		}
		var out countWriter
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.SysProcAttr = childAttr()
		t := time.Now()
		err := cmd.Run()
		wall := time.Since(t)
		if err != nil {
			return nil, fmt.Errorf("mutate on %d deployments: %w\n%s", n, err, stderr.String())
		}
		walls = append(walls, wall)
		if gnuTime != "" {
			_, kib, found := strings.Cut(stderr.String(), "maxrss-kib=")
			v, err := strconv.ParseFloat(strings.TrimSpace(kib), 64)
			if !found || err != nil {
				return nil, fmt.Errorf("no peak RSS from %s: %q", gnuTime, stderr.String())
			}
			res.PeakRSSMiB = max(res.PeakRSSMiB, v/1024)
		} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			// Linux reports ru_maxrss in KiB (an upper bound here: see above).
			res.PeakRSSMiB = max(res.PeakRSSMiB, float64(ru.Maxrss)/1024)
		}
		res.OutputBytes = out.n
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	res.WallMs = ms(walls[len(walls)/2])
	if res.OutputBytes <= len(buf.Bytes()) {
		return nil, fmt.Errorf("mutate wrote %d bytes for %d input bytes: nothing was added", res.OutputBytes, buf.Len())
	}
	return res, nil
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// RunKubectlDryRun times `kubectl apply --dry-run=client -f input` against the API server of
// kubeconfig, runs times (median wall, largest peak RSS through GNU time when installed), for
// the n Deployments of input.
func RunKubectlDryRun(kubectl, kubeconfig, input string, n, runs int) (*Offline, error) {
	res := &Offline{Tool: "kubectl", Deployments: n, Input: input}
	gnuTime, _ := exec.LookPath("/usr/bin/time")
	var walls []time.Duration
	for r := 0; r < runs; r++ {
		args := []string{"--kubeconfig=" + kubeconfig, "apply", "--dry-run=client", "-f", input}
		cmd := exec.Command(kubectl, args...)
		if gnuTime != "" {
			cmd = exec.Command(gnuTime, append([]string{"-f", "maxrss-kib=%M", kubectl}, args...)...)
		}
		var out countWriter
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.SysProcAttr = childAttr()
		t := time.Now()
		err := cmd.Run()
		wall := time.Since(t)
		if err != nil {
			return nil, fmt.Errorf("kubectl apply --dry-run=client on %d deployments: %w\n%s", n, err, stderr.String())
		}
		walls = append(walls, wall)
		if _, kib, found := strings.Cut(stderr.String(), "maxrss-kib="); found {
			if v, err := strconv.ParseFloat(strings.TrimSpace(kib), 64); err == nil {
				res.PeakRSSMiB = max(res.PeakRSSMiB, v/1024)
			}
		}
		res.OutputBytes = out.n
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	res.WallMs = ms(walls[len(walls)/2])
	return res, nil
}
