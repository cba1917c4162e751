// Command bench is `make bench` (and, with -soak, `make bench-soak`): it measures the webhook
// against its floor and against no webhook, prints the tables and the targets, and writes the
// same figures to bench/results/latest.json. See test/bench/RESULTS.md for the latest run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/bench"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
)

// The audit benchmark's size (section 4b), package-level so that run's signature stays as is.
var (
	auditPods = flag.Int("audit-pods", 10000, "pods of the audit benchmark (section 4b; 0 skips it)")
	auditNS   = flag.Int("audit-namespaces", 500, "namespaces of the audit benchmark")
)

func main() {
	loader := flag.Bool("loader", false, "internal: run one load step (LoadSpec on stdin)")
	soak := flag.Bool("soak", false, "run only the soak (section 5)")
	soakFor := flag.Duration("soak-duration", 10*time.Minute, "soak length")
	only := flag.String("only", "1,2,3,4", "sections to run (comma-separated, from 1,2,3,4)")
	step := flag.Duration("step", 6*time.Second, "measured length of each direct-load step")
	warmup := flag.Duration("warmup", time.Second, "warmup before each direct-load step")
	pods := flag.Int("pods", 500, "pods created per mode through the apiserver")
	parallel := flag.Int("parallelism", 8, "concurrent pod creations through the apiserver")
	rounds := flag.Int("rounds", 5, "interleaved rounds per mode through the apiserver")
	count := flag.Int("count", 3, "runs of each Go benchmark (the median is kept)")
	out := flag.String("out", "", "JSON output (default bench/results/latest.json, or soak.json with -soak)")
	flag.Parse()

	if *loader {
		if err := bench.LoaderMain(); err != nil {
			fmt.Fprintln(os.Stderr, "loader:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*soak, *soakFor, *only, *step, *warmup, *pods, *rounds, *parallel, *count, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(soak bool, soakFor time.Duration, only string, step, warmup time.Duration, pods, rounds, parallel, count int, out string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := podgen.RepoRoot()
	if err != nil {
		return err
	}
	if out == "" {
		name := "latest.json"
		if soak {
			name = "soak.json"
		}
		out = filepath.Join(root, "bench", "results", name)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "pgl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	rep := &bench.Report{Started: time.Now(), Machine: bench.DescribeMachine()}
	sections := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		sections[strings.TrimSpace(s)] = true
	}
	if soak {
		sections = map[string]bool{"5": true}
	}

	logf("building pushgateway-lifecycle")
	bin, err := bench.BuildBinary(root, tmp)
	if err != nil {
		return err
	}
	benchServer, err := bench.BuildBenchServer(root, tmp)
	if err != nil {
		return err
	}
	certDir := filepath.Join(tmp, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	caPEM, err := bench.WriteCerts(certDir)
	if err != nil {
		return err
	}
	pod, err := podgen.Realistic()
	if err != nil {
		return err
	}
	podJSON, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	direct := bench.DirectOptions{Binary: bin, BenchServer: benchServer, CertDir: certDir, CAPEM: caPEM,
		Body: podgen.Review("3f0e5c1a-7b2d-4c9e-8f1a-6d5b4c3a2e10", podJSON), Warmup: warmup, Duration: step,
		Rates: []float64{500, 2000, 5000, 0}, Loader: self}

	if sections["1"] {
		logf("1. Go benchmarks (-count=%d)", count)
		if rep.Micro, err = bench.RunMicro(root, count); err != nil {
			return err
		}
	}
	if sections["2"] && ctx.Err() == nil {
		logf("2. direct load, realistic pod review of %d bytes", len(direct.Body))
		if rep.Direct, err = bench.RunDirect(direct, logf); err != nil {
			return err
		}
	}
	if sections["3"] && ctx.Err() == nil {
		logf("3. pod creation through kube-apiserver: %d pods per mode in %d interleaved rounds", pods, rounds)
		if rep.API, err = bench.RunAPIServer(ctx, bench.APIOptions{Binary: bin, BenchServer: benchServer, Pods: pods, Rounds: rounds, Parallelism: parallel}, logf); err != nil {
			return err
		}
	}
	if sections["4"] && ctx.Err() == nil {
		logf("4. offline mutate")
		for _, n := range []int{1, 100, 1000} {
			o, err := bench.RunOffline(bin, tmp, n, 3)
			if err != nil {
				return err
			}
			rep.Offline = append(rep.Offline, *o)
		}
		if *auditPods > 0 && ctx.Err() == nil {
			logf("4b. audit of %d pods in %d namespaces", *auditPods, *auditNS)
			if rep.Audit, err = bench.RunAudit(ctx, bin, *auditPods, *auditNS, 5, 32, logf); err != nil {
				return err
			}
		}
	}
	if sections["5"] && ctx.Err() == nil {
		logf("5. soak: %s at 1,000 req/s", soakFor)
		if rep.Soak, err = bench.RunSoak(direct, 1000, soakFor, logf); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Evaluate()
	rep.Print(os.Stdout)
	if err := rep.Write(out); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s (%.0f s)\n", out, rep.Seconds)
	if failed := rep.FailedChecks(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, t := range failed {
			names[i] = t.Name + " (" + t.Measured + ")"
		}
		return fmt.Errorf("not a valid measurement: %s", strings.Join(names, "; "))
	}
	return nil
}
