package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// DirectStep is one rate step against one server.
type DirectStep struct {
	Server     string  `json:"server"`     // "webhook" or "floor"
	TargetRate float64 `json:"target_rps"` // 0 = max
	LoadResult
	// ServerCPUPer1000 is the server's CPU seconds per 1,000 requests answered in the step.
	ServerCPUPer1000 float64 `json:"server_cpu_s_per_1000"`
	// ServerCores is the server's CPU use during the step, in cores.
	ServerCores float64 `json:"server_cores"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
}

// DirectOptions for RunDirect.
type DirectOptions struct {
	Binary string
	// BenchServer serves the floor (test/bench/cmd/benchserver --mode=constant-answer).
	BenchServer string
	CertDir     string
	CAPEM       []byte
	Body        []byte
	Rates       []float64 // 0 = max
	Warmup      time.Duration
	Duration    time.Duration
	// Loader is this program, re-executed with -loader on core 0.
	Loader string
}

// RunDirect starts the webhook and the floor, both on core 1, and runs every rate against
// each in turn (floor then webhook, rate by rate, so that drift on the shared machine hits
// both alike).
func RunDirect(o DirectOptions, log func(string, ...any)) ([]DirectStep, error) {
	servers := []struct {
		name  string
		bin   string
		extra []string
	}{{"floor", o.BenchServer, []string{"--mode=constant-answer"}}, {"webhook", o.Binary, nil}}
	procs := map[string]*harness.Webhook{}
	defer func() {
		for _, w := range procs {
			_ = w.Stop(10 * time.Second)
		}
	}()
	for _, s := range servers {
		w, err := StartPinned(s.bin, o.CertDir, "1", s.extra...)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", s.name, err)
		}
		procs[s.name] = w
	}
	var steps []DirectStep
	for _, rate := range o.Rates {
		for _, s := range servers {
			w := procs[s.name]
			expect := `"allowed":true`
			if s.name == "webhook" {
				expect = `"patch":"`
			}
			conns := 16
			if rate == 0 {
				conns = 32
			}
			spec := LoadSpec{Addr: fmt.Sprintf("127.0.0.1:%d", w.Port), Path: harness.MutatePodPath, Body: o.Body, CAPEM: o.CAPEM,
				Rate: rate, Warmup: o.Warmup, Duration: o.Duration, Connections: conns, Expect: expect}
			// The server CPU is read around the whole step; the warmup share is removed
			// in proportion below, which is exact at fixed rates and close enough at max.
			cpu0, err := ProcCPU(w.Pid())
			if err != nil {
				return nil, err
			}
			res, err := RunLoader(o.Loader, spec)
			if err != nil {
				return nil, fmt.Errorf("%s at %v req/s: %w", s.name, rate, err)
			}
			cpu1, err := ProcCPU(w.Pid())
			if err != nil {
				return nil, err
			}
			_, hwm, _ := harness.ProcMemKiB(w.Pid())
			total := (o.Warmup + o.Duration).Seconds()
			cpu := (cpu1 - cpu0).Seconds() * o.Duration.Seconds() / total
			st := DirectStep{Server: s.name, TargetRate: rate, LoadResult: *res, PeakRSSMiB: float64(hwm) / 1024,
				ServerCores: cpu / o.Duration.Seconds()}
			if res.Requests > 0 {
				st.ServerCPUPer1000 = cpu / float64(res.Requests) * 1000
			}
			steps = append(steps, st)
			log("  %-7s %6s: %8.0f req/s  p50 %6.2f  p99 %6.2f ms  errors %d  server %.2f cores  loader %.2f cores",
				s.name, rateName(rate), res.Achieved, float64(res.P50us)/1000, float64(res.P99us)/1000, res.Errors, st.ServerCores, res.LoaderCPU)
		}
	}
	return steps, nil
}

func rateName(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%.0f", r)
}

// RunLoader runs one load step in the loader child process pinned to core 0.
func RunLoader(self string, spec LoadSpec) (*LoadResult, error) {
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", "-c", "0", self, "-loader")
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	var res LoadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("loader output %q: %w", out.String(), err)
	}
	return &res, nil
}

// LoaderMain is the child side: a LoadSpec in on stdin, a LoadResult out on stdout.
func LoaderMain() error {
	var spec LoadSpec
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		return err
	}
	res, err := RunLoad(spec)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
