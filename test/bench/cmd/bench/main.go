// Command bench is `make bench` (and, with -soak, `make bench-soak`; with -peers, `make
// bench-peers`): it measures the webhook against its floors, its peers and no webhook, prints
// the tables and the targets, writes every figure to bench/results/latest.json and, for a full
// run, docs/performance.md, docs/performance.json and the README's performance line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/bench"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// The audit benchmark's size (section 4b), package-level so that run's signature stays as is.
var (
	auditPods = flag.Int("audit-pods", 10000, "pods of the audit benchmark (section 4b; 0 skips it)")
	auditNS   = flag.Int("audit-namespaces", 500, "namespaces of the audit benchmark")
	memPods   = flag.String("memory-pods", "0,10000,100000", "unrelated pods of section 6's rows (comma-separated, ascending)")
	memSel    = flag.Int("memory-selected", 100, "Pushgateway pods of section 6")
	memLoadAt = flag.Int("memory-load-at", 10000, "section 6's row (unrelated pods) that also gets a direct-load step at 2,000 req/s (-1: none)")
	peers     = flag.Bool("peers", false, "also measure the peers built outside this module (Kyverno; make bench-peers)")
	docs      = flag.String("docs", "auto", "write docs/performance.{md,json} and the README's line: auto (when every section of make bench ran), true, false")
	command   = flag.String("command", "make bench", "the command named in docs/performance.md's header")
)

// defaultSections are make bench's sections (5, the soak, is make bench-soak).
const defaultSections = "1,2,3,4,6"

func main() {
	loader := flag.Bool("loader", false, "internal: run one load step (LoadSpec on stdin)")
	soak := flag.Bool("soak", false, "run only the soak (section 5)")
	soakFor := flag.Duration("soak-duration", 10*time.Minute, "soak length")
	only := flag.String("only", defaultSections, "sections to run (comma-separated, from "+defaultSections+")")
	step := flag.Duration("step", 6*time.Second, "measured length of each direct-load step")
	warmup := flag.Duration("warmup", time.Second, "warmup before each direct-load step")
	pods := flag.Int("pods", 500, "pods created per mode through the apiserver")
	parallel := flag.Int("parallelism", 8, "concurrent pod creations through the apiserver")
	rounds := flag.Int("rounds", 5, "interleaved rounds per mode through the apiserver")
	count := flag.Int("count", 3, "runs of each Go benchmark (the median is kept)")
	out := flag.String("out", "", "JSON output (default bench/results/latest.json, or soak.json with -soak)")
	flag.Parse()
	// envtest logs through controller-runtime; without a logger it prints a stack trace instead.
	ctrllog.SetLogger(logr.Discard())

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
	root, err := fixtures.RepoRoot()
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
	if sections["3"] {
		rep.Peers = append(rep.Peers, kyvernoPeer(root, *peers))
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
		ref, err := kubectlReference(ctx, rep.Offline[len(rep.Offline)-1])
		if err != nil {
			return err
		}
		rep.Offline = append(rep.Offline, *ref)
		if *auditPods > 0 && ctx.Err() == nil {
			logf("4b. audit of %d pods in %d namespaces", *auditPods, *auditNS)
			if rep.Audit, err = bench.RunAudit(ctx, bin, *auditPods, *auditNS, 5, 32, logf); err != nil {
				return err
			}
		}
	}
	if sections["6"] && ctx.Err() == nil {
		var counts []int
		for _, f := range strings.Split(*memPods, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("-memory-pods: %w", err)
			}
			counts = append(counts, n)
		}
		logf("6. memory of the handoff informer: %v unrelated pods, %d Pushgateway pods", counts, *memSel)
		if rep.Memory, err = bench.RunMemory(ctx, bench.MemoryOptions{Binary: bin, CertDir: certDir, CAPEM: caPEM, Body: direct.Body, Loader: self,
			Unrelated: counts, Selected: *memSel, Clients: 32, LoadAt: *memLoadAt, LoadRate: 2000, Warmup: warmup, Duration: step}, logf); err != nil {
			return err
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
	rep.LoadAvgEnd = bench.LoadAvg()
	rep.Evaluate()
	rep.Print(os.Stdout)
	if err := rep.Write(out); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s (%.0f s)\n", out, rep.Seconds)
	writeDocs := *docs == "true"
	if *docs == "auto" {
		writeDocs = !soak && sameSections(only, defaultSections)
	}
	if writeDocs {
		if err := rep.WriteDocs(root, *command); err != nil {
			return err
		}
		fmt.Println("wrote docs/performance.md, docs/performance.json and README.md's performance line")
	}
	if failed := rep.FailedChecks(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, t := range failed {
			names[i] = t.Name + " (" + t.Measured + ")"
		}
		return fmt.Errorf("not a valid measurement: %s", strings.Join(names, "; "))
	}
	return nil
}

// sameSections tells whether the comma-separated lists a and b name the same sections.
func sameSections(a, b string) bool {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, f := range strings.Split(s, ",") {
			m[strings.TrimSpace(f)] = true
		}
		return m
	}
	x, y := set(a), set(b)
	if len(x) != len(y) {
		return false
	}
	for k := range x {
		if !y[k] {
			return false
		}
	}
	return true
}

// kubectlReference times `kubectl apply --dry-run=client -f` of the file mutate was timed on,
// against a kube-apiserver started for it: kubectl needs one even for a client dry-run
// (discovery, and each object's live state).
func kubectlReference(ctx context.Context, o bench.Offline) (*bench.Offline, error) {
	logf("4. kubectl apply --dry-run=client -f of the same %d Deployments (against a local kube-apiserver)", o.Deployments)
	cp, err := harness.Start(harness.Options{})
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	// Discovery warmed once, as a user's kubectl has its cache.
	if _, _, err := cp.Kubectl(ctx, nil, "api-resources"); err != nil {
		return nil, fmt.Errorf("kubectl api-resources: %w", err)
	}
	return bench.RunKubectlDryRun(cp.KubectlPath(), cp.KubeconfigPath, o.Input, o.Deployments, 3)
}

// KyvernoVersion is the Kyverno release hack/kyverno.sh builds.
const KyvernoVersion = "v1.19.1"

// kyvernoPeer is the Kyverno row of section 3: not measured, and why. Its last figure comes
// from a hand run of 2026-11-27 on this machine class, quoted here (not an input of the run).
func kyvernoPeer(root string, peers bool) bench.MissingPeer {
	p := bench.MissingPeer{Mode: "kyverno", LastMeasured: "2026-11-27 (a hand run out of cluster, not this bench: p50 70-75 ms, p99 168-190 ms, 8.2-8.9x none, on this machine class)"}
	if !peers {
		p.Why = "make bench-peers measures the peers built outside this module; "
	}
	bin := filepath.Join(root, "bin", "kyverno", KyvernoVersion, "kyverno")
	if _, err := os.Stat(bin); err != nil {
		p.Why += "Kyverno " + KyvernoVersion + " is not built here (hack/kyverno.sh builds it from the Go module proxy into bin/kyverno/" + KyvernoVersion + ", about 9 minutes on 2 cores)"
	} else {
		p.Why += "Kyverno " + KyvernoVersion + " is built (" + strings.TrimPrefix(bin, root+"/") + "), but running it out of cluster as a peer of section 3 (its CRDs, ConfigMaps, Lease and flags; it registers and removes its own webhook configurations, which the interleaved rounds must control) is not wired into the bench yet"
	}
	return p
}
