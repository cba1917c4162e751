package node

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/ociimage"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
	proof "github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/termination"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/timeline"
)

// interruptions runs the whole matrix (make proof-interruptions); without it, make test-node
// runs its short form (the delete scenario, both specs).
var interruptions = flag.Bool("interruptions", false, "run every interruption scenario with both specs on two nodes with Prometheus and write docs/interruptions.md and docs/interruptions/ (make proof-interruptions)")

// only runs some scenarios of the matrix, and writes no page: a developer's rerun of a cell.
var only = flag.String("interruptions.only", "", "with -interruptions: run only these comma-separated scenarios (no-persistence,delete) and write nothing to docs/")

// The scenarios' names, as docs/interruptions/results.json spells them.
const (
	scenarioRecreate      = "rollout-recreate"
	scenarioDelete        = "delete"
	scenarioEviction      = "eviction"
	scenarioDrain         = "drain"
	scenarioScaleZero     = "scale-zero"
	scenarioRollingUpdate = "rollout-rollingupdate"
	scenarioCrash         = "crash"
	scenarioNoPersistence = "no-persistence"
)

// matrixPreload is smaller than the proof's: the matrix runs 16 arms in one sitting, and its
// crash arm persists every matrixCrashInterval; the shutdown persist still takes about a second.
var matrixPreload = proof.Preload{Groups: 4, PerGroup: 1000, ValueBytes: 20000}

// matrixCrashInterval is the crash arm's --persistence.interval: the bound on what a SIGKILL
// may lose. The other arms persist every hour, so that only the shutdown persist counts.
const matrixCrashInterval = 10 * time.Second

// scenario is how one row of the matrix makes the pod go away.
type scenario struct {
	what string
	// before runs before the workload is applied, ready once its pod is Ready, after at the
	// end of the arm (all optional).
	before, ready, after func(t *testing.T, n *harness.Node, a proofArm)
	// interrupt makes the pod go away; it returns when it did so (the crash's t = 0).
	interrupt func(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, old *corev1.Pod) time.Time
}

func deletePod(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, old *corev1.Pod) time.Time {
	// The ReplicaSet replaces a deleted pod at once, beside the terminating one: without the
	// handoff gate the replacement reads the volume before the old pod's shutdown persist.
	if err := n.Clientset.CoreV1().Pods(a.ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func rolloutRestart(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, _ *corev1.Pod) time.Time {
	// What `kubectl rollout restart` does. Under Recreate the Deployment creates the
	// replacement only once the old pod is gone; under RollingUpdate first.
	restart := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := n.Clientset.AppsV1().Deployments(a.ns).Patch(ctx, proofService, types.StrategicMergePatchType, []byte(restart), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func evict(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, old *corev1.Pod) time.Time {
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: old.Name, Namespace: a.ns}}
	deadline := time.Now().Add(time.Minute)
	for {
		err := n.Clientset.CoreV1().Pods(a.ns).EvictV1(ctx, ev)
		if err == nil {
			return time.Now()
		}
		// 429: the budget does not allow it yet (the PDB's status is computed by the
		// disruption controller shortly after the pod is Ready); kubectl drain retries too.
		if time.Now().After(deadline) {
			t.Fatalf("arm %s: evicting %s: %v", a.name, old.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// pdb is a budget that lets a single replica be evicted (maxUnavailable: 1): a minAvailable of
// 1 on one replica blocks every drain for ever, which is why the product advises against it.
func pdb(t *testing.T, n *harness.Node, a proofArm) {
	kubectl(t, n, []byte(fmt.Sprintf(`apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: pushgateway
  namespace: %s
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: prometheus-pushgateway
`, a.ns)), "apply", "-f", "-")
}

func worker(t *testing.T, n *harness.Node) string {
	if len(n.Workers) == 0 {
		t.Fatal("the drain scenario needs a second node (NodeOptions.Workers)")
	}
	return n.Workers[0].Name
}

var scenarios = map[string]scenario{
	"":               {what: "rollout of the Recreate Deployment", interrupt: rolloutRestart},
	scenarioRecreate: {what: "`kubectl rollout restart` of the Recreate Deployment", interrupt: rolloutRestart},
	scenarioDelete:   {what: "`kubectl delete pod`", interrupt: deletePod},
	scenarioEviction: {what: "the Eviction API, a PodDisruptionBudget with maxUnavailable 1", before: pdb, interrupt: evict},
	scenarioDrain: {
		what: "node A cordoned, the pod evicted as `kubectl drain` does; the replacement runs on node B",
		before: func(t *testing.T, n *harness.Node, a proofArm) {
			pdb(t, n, a)
			kubectl(t, n, nil, "cordon", worker(t, n)) // the pod starts on node A
		},
		ready: func(t *testing.T, n *harness.Node, a proofArm) {
			kubectl(t, n, nil, "uncordon", worker(t, n))
		},
		interrupt: func(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, old *corev1.Pod) time.Time {
			kubectl(t, n, nil, "cordon", old.Spec.NodeName)
			return evict(ctx, t, n, a, old)
		},
		after: func(t *testing.T, n *harness.Node, a proofArm) {
			for _, name := range n.NodeNames() {
				kubectl(t, n, nil, "uncordon", name)
			}
		},
	},
	scenarioScaleZero: {
		what: "scale subresource to 0, and back to 1 as soon as the pod is terminating (an autoscaler)",
		interrupt: func(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, old *corev1.Pod) time.Time {
			scale := func(r int32) {
				s, err := n.Clientset.AppsV1().Deployments(a.ns).GetScale(ctx, proofService, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				s.Spec.Replicas = r
				if _, err := n.Clientset.AppsV1().Deployments(a.ns).UpdateScale(ctx, proofService, s, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			scale(0)
			at := time.Now()
			for deadline := time.Now().Add(time.Minute); ; {
				p, err := n.Clientset.CoreV1().Pods(a.ns).Get(ctx, old.Name, metav1.GetOptions{})
				if err != nil || p.DeletionTimestamp != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("arm %s: %s not terminating a minute after the scale to 0", a.name, old.Name)
				}
				time.Sleep(50 * time.Millisecond)
			}
			scale(1)
			return at
		},
	},
	scenarioRollingUpdate: {what: "`kubectl rollout restart` of the Deployment switched to RollingUpdate, both pods on the one claim (a user's mistake)", interrupt: rolloutRestart},
	scenarioCrash: {
		what: fmt.Sprintf("SIGKILL of the Pushgateway process (as the OOM killer does); --persistence.interval=%s", matrixCrashInterval),
		interrupt: func(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, old *corev1.Pod) time.Time {
			id := ""
			for _, cs := range old.Status.ContainerStatuses {
				id = strings.TrimPrefix(cs.ContainerID, "containerd://")
			}
			if _, err := n.CtrOn(ctx, old.Spec.NodeName, "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
				t.Fatalf("arm %s: %v", a.name, err)
			}
			return time.Now()
		},
	},
	scenarioNoPersistence: {what: "`kubectl rollout restart` of the chart's default (no volume)", interrupt: rolloutRestart},
}

// replaced says whether the Service routes to the replacement: a new pod's ready endpoint, or
// for a crash the same pod's, ready again after a moment with none.
func replaced(w *routeWatch, sc string) bool {
	if sc != scenarioCrash {
		return w.current() == timeline.RouteNew
	}
	none := false
	for _, c := range w.changes() {
		if c.route == timeline.RouteNone {
			none = true
		}
		if none && c.what == "old endpoint ready" {
			return true
		}
	}
	return false
}

// noEndpointSeconds adds up the time between from and to when the slice had no serving
// endpoint.
func noEndpointSeconds(cs []routeChange, from, to time.Time) float64 {
	total := 0.0
	var since time.Time
	for _, c := range cs {
		switch {
		case c.route == timeline.RouteNone && since.IsZero():
			since = c.at
		case c.route != timeline.RouteNone && !since.IsZero():
			total += overlap(since, c.at, from, to)
			since = time.Time{}
		}
	}
	if !since.IsZero() {
		total += overlap(since, to, from, to)
	}
	return total
}

func overlap(a, b, from, to time.Time) float64 {
	if a.Before(from) {
		a = from
	}
	if b.After(to) {
		b = to
	}
	if b.Before(a) {
		return 0
	}
	return b.Sub(a).Seconds()
}

// storedInPrometheus asks Prometheus which pushes of the arm it stored (the series API over the
// arm's time), waiting until the acknowledged pushes are all there or three scrape intervals
// pass with no new one: the replacement's first scrapes come a discovery lag after it is routed.
func storedInPrometheus(ctx context.Context, t *testing.T, p *harness.Prometheus, ns string, pushes []proofPush, from time.Time) map[string]bool {
	t.Helper()
	acked := 0
	for _, pu := range pushes {
		if pu.status/100 == 2 {
			acked++
		}
	}
	var got map[string]bool
	last, lastChange := -1, time.Now()
	for {
		series, err := p.Series(ctx, fmt.Sprintf(`proof_push{namespace=%q}`, ns), from.Add(-time.Minute), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]bool{}
		for _, s := range series {
			got[s["instance"]] = true
		}
		if len(got) != last {
			last, lastChange = len(got), time.Now()
		}
		if len(got) >= acked || time.Since(lastChange) > 3*harness.PrometheusScrapeInterval {
			break
		}
		time.Sleep(time.Second)
	}
	// Storing no push can be the result (a replacement that lost them all, an old pod never
	// scraped); never having scraped the namespace's Pushgateway is a broken experiment.
	up, err := p.Series(ctx, fmt.Sprintf(`up{namespace=%q}`, ns), from.Add(-time.Minute), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(up) == 0 {
		targets, _ := p.Targets(ctx)
		t.Fatalf("Prometheus never scraped a Pushgateway in %s: the discovery or the scrape does not work\ntargets:\n%s", ns, targets)
	}
	return got
}

// matrixRow is one object of docs/interruptions/results.json; nil is a figure that does not
// apply, never a made-up zero.
type matrixRow struct {
	Scenario             string   `json:"scenario"`
	Spec                 string   `json:"spec"`
	Acknowledged         int      `json:"acknowledged"`
	LostStore            *int     `json:"lost_store"`
	LostPrometheus       *int     `json:"lost_prometheus"`
	Refused              int      `json:"refused"`
	NoEndpointSeconds    float64  `json:"no_endpoint_seconds"`
	StartToRoutedSeconds *float64 `json:"start_to_routed_seconds"`
	HandoffHoldSeconds   *float64 `json:"handoff_hold_seconds"`
	Kubernetes           string   `json:"kubernetes"`
	Pushgateway          string   `json:"pushgateway"`
	Prometheus           string   `json:"prometheus"`
	Date                 string   `json:"date"`
}

func optInt(v int) *int {
	if v < 0 {
		return nil
	}
	return &v
}

func optFloat(v float64) *float64 {
	if v < 0 {
		return nil
	}
	v = float64(int(v*100+0.5)) / 100
	return &v
}

func rowOf(r *proofResult, spec, kube, pgw, prom string) matrixRow {
	stR := -1.0
	if r.newStart >= 0 && r.routedNew >= 0 {
		stR = r.routedNew - r.newStart
	}
	return matrixRow{
		Scenario: r.arm.scenario, Spec: spec, Acknowledged: r.ackOld + r.ackNew,
		LostStore: optInt(r.lostStore), LostPrometheus: optInt(r.lostProm),
		Refused: r.refusedOld + r.noEndpoint + r.other, NoEndpointSeconds: *optFloat(r.noEndpointSeconds),
		StartToRoutedSeconds: optFloat(stR), HandoffHoldSeconds: optFloat(r.heldFor),
		Kubernetes: kube, Pushgateway: pgw, Prometheus: prom, Date: r.ran.UTC().Format(time.RFC3339),
	}
}

// matrixImages builds the Pushgateway image (the static binary under the upstream reference)
// and the webhook's image.
func matrixImages(t *testing.T, pgwBin string) []string {
	t.Helper()
	img := ociimage.Pushgateway(pgwBin, harness.PushgatewayImageRef, runtime.GOARCH)
	tar := filepath.Join(t.TempDir(), "pushgateway.tar")
	if err := ociimage.WriteTarball(tar, img); err != nil {
		t.Fatal(err)
	}
	wh, _, err := harness.WebhookImage(os.Getenv("PGL_BINARY"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{tar, wh}
}

// matrixArm is one arm: a scenario with one of the two specs.
func matrixArm(t *testing.T, scenarioName string, product bool, persistence, def []byte, prom *harness.Prometheus) proofArm {
	t.Helper()
	spec := "upstream"
	if product {
		spec = "product"
	}
	a := proofArm{name: scenarioName + ", " + spec, file: scenarioName + "-" + spec, scenario: scenarioName,
		ns: strings.ReplaceAll(scenarioName, "rollout-", "") + "-" + spec, inject: product, prom: prom}
	switch scenarioName {
	case scenarioNoPersistence:
		a.manifest, a.noPersistence = def, true
	case scenarioCrash:
		a.manifest = insertAfterPullPolicy(t, persistence, strings.Replace(proofArgs, "--persistence.interval=1h", "--persistence.interval="+matrixCrashInterval.String(), 1))
	case scenarioRollingUpdate:
		a.manifest = bytes.Replace(insertAfterPullPolicy(t, persistence, proofArgs), []byte("type: Recreate"), []byte("type: RollingUpdate"), 1)
	default:
		a.manifest = insertAfterPullPolicy(t, persistence, proofArgs)
	}
	return a
}

// runMatrix starts two nodes, Prometheus and the product's chart, runs each scenario with the
// upstream spec and then the product's, and returns the results in that order.
func runMatrix(t *testing.T, ctx context.Context, names []string, logDir string) ([]*proofResult, *harness.Prometheus, string) {
	t.Helper()
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pgwBin := pushgatewayBinary(t, root)
	promBin, err := harness.PrometheusBinary()
	if err != nil {
		t.Fatal(err)
	}
	ps := &proof.Processes{}
	t.Cleanup(ps.StopAll)
	seed, err := proof.Seed(ctx, ps, pgwBin, t.TempDir(), matrixPreload)
	if err != nil {
		t.Fatal(err)
	}
	ps.StopAll()
	persistence, err := fixtures.ReadUpstreamChart("persistence.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := fixtures.ReadUpstreamChart("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	images := matrixImages(t, pgwBin)
	start := time.Now()
	n := harness.NewNode(t, harness.NodeOptions{Images: images, Progress: testWriter{t}, LogDir: logDir, Workers: 1})
	t.Logf("two nodes Ready %.1fs after their start", time.Since(start).Seconds())
	prom, err := n.StartPrometheus(promBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Prometheus %s ready, scrape interval %s", prom.Version, harness.PrometheusScrapeInterval)
	if out, err := n.InstallChart(ctx, t.TempDir()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var results []*proofResult
	for _, sc := range names {
		for _, product := range []bool{false, true} {
			a := matrixArm(t, sc, product, persistence, def, prom)
			r := runProofArm(ctx, t, n, a, seed.File, filepath.Join(logDir, "containerd.log"))
			t.Logf("arm %s: %s; lost in the store %d, in Prometheus %d, %.2fs without a serving endpoint", a.name, r.summary(), r.lostStore, r.lostProm, r.noEndpointSeconds)
			results = append(results, r)
		}
	}
	stopAndCheck(t, n)
	// The binaries built from the module proxy carry no version stamp (the API server says
	// v0.0.0-master); the release they were built from is KUBE_VERSION's.
	kube := os.Getenv("KUBE_VERSION")
	if kube == "" {
		kube = harness.DefaultKubeVersion
	}
	return results, prom, kube
}

// graceful are the scenarios in which the product promises no loss.
func graceful(sc string) bool {
	return sc != scenarioCrash && sc != scenarioRollingUpdate
}

// checkMatrix holds every arm to what it exists to show.
func checkMatrix(t *testing.T, results []*proofResult) {
	t.Helper()
	for _, r := range results {
		if r.attempts == 0 || r.ackOld+r.ackNew == 0 {
			t.Errorf("arm %s: %d pushes, %d acknowledged: the load did not run", r.arm.name, r.attempts, r.ackOld+r.ackNew)
		}
		if !r.arm.noPersistence && !r.marker {
			t.Errorf("arm %s: the replacement did not restore the preloaded store from the volume", r.arm.name)
		}
		if r.arm.inject && graceful(r.arm.scenario) && (r.lostStore > 0 || r.lostProm > 0) {
			t.Errorf("arm %s: the product's spec lost %d acknowledged pushes in the store and %d in Prometheus; want 0", r.arm.name, r.lostStore, r.lostProm)
		}
		if r.arm.scenario == scenarioCrash && r.oldestLostBeforeKill > (matrixCrashInterval+5*time.Second).Seconds() {
			t.Errorf("arm %s: a push acknowledged %.1fs before the SIGKILL was lost: more than the persist interval %s (and a persist's duration)", r.arm.name, r.oldestLostBeforeKill, matrixCrashInterval)
		}
	}
}

// TestNodeInterruptionsShort is the matrix's short form in make test-node: the delete scenario
// with both specs, on two nodes, judged by the store and by Prometheus.
func TestNodeInterruptionsShort(t *testing.T) {
	if *interruptions || *proofNode {
		t.Skip("the full matrix runs instead")
	}
	// Five minutes and a Prometheus build: make test-node's, not make test's (which runs the
	// other node tests where it can).
	if os.Getenv("PGL_REQUIRE_NODE") != "1" {
		t.Skip("the interruption matrix's short form runs in make test-node (PGL_REQUIRE_NODE=1)")
	}
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	results, _, _ := runMatrix(t, ctx, []string{scenarioDelete}, t.TempDir())
	checkMatrix(t, results)
	for _, r := range results {
		t.Logf("%s: acknowledged %d, lost in the store %d, lost in Prometheus %d, hold %s", r.arm.name, r.ackOld+r.ackNew, r.lostStore, r.lostProm, secs(r.heldFor))
	}
	if !results[1].gated {
		t.Errorf("delete, product: the replacement was not created with the handoff gate")
	}
}

// TestInterruptions is make proof-interruptions: every scenario, both specs, the page, the
// pictures and the JSON.
func TestInterruptions(t *testing.T) {
	if !*interruptions {
		t.Skip("the interruption matrix runs with -interruptions (make proof-interruptions)")
	}
	if err := harness.NodeSupported(); err != nil {
		t.Fatal(err)
	}
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	names := []string{scenarioRecreate, scenarioDelete, scenarioEviction, scenarioDrain, scenarioScaleZero,
		scenarioRollingUpdate, scenarioCrash, scenarioNoPersistence}
	if *only != "" {
		names = strings.Split(*only, ",")
		for _, n := range names {
			if _, ok := scenarios[n]; !ok {
				t.Fatalf("-interruptions.only: unknown scenario %q", n)
			}
		}
	}
	results, prom, kube := runMatrix(t, ctx, names, t.TempDir())
	if *only != "" {
		for _, r := range results {
			t.Logf("%s: acknowledged %d, lost in the store %d, lost in Prometheus %d, refused %d, no serving endpoint %.2fs, hold %s; %s",
				r.arm.name, r.ackOld+r.ackNew, r.lostStore, r.lostProm, r.refusedOld+r.noEndpoint, r.noEndpointSeconds, secs(r.heldFor), r.summary())
		}
		checkMatrix(t, results)
		return
	}

	outDir := filepath.Join(root, "docs", "interruptions")
	pics := writeArmLogs(t, outDir, results)
	var rows []matrixRow
	for _, r := range results {
		rows = append(rows, rowOf(r, specOf(r), kube, strings.TrimPrefix(harness.PushgatewayImageRef, "quay.io/prometheus/pushgateway:"), prom.Version))
	}
	js, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "results.json"), append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "summary.svg"), []byte(summarySVG(rows)), 0o644); err != nil {
		t.Fatal(err)
	}
	took := time.Since(started).Round(time.Second)
	page := interruptionsPage(results, rows, pics, took)
	if err := os.WriteFile(filepath.Join(root, "docs", "interruptions.md"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Println(page)
	checkMatrix(t, results)
}

// interruptionsPage is docs/interruptions.md, written by the run.
func interruptionsPage(results []*proofResult, rows []matrixRow, pics []string, took time.Duration) string {
	var b strings.Builder
	num := func(p *int) string {
		if p == nil {
			return "n/a"
		}
		return fmt.Sprint(*p)
	}
	fl := func(p *float64) string {
		if p == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.2f s", *p)
	}
	b.WriteString("<!-- Generated by `make proof-interruptions` (test/node/interruptions_test.go); do not edit. -->\n")
	b.WriteString("# Every interruption, on two real nodes, judged by what Prometheus stored\n\n")
	fmt.Fprintf(&b, "Run %s on %d CPUs; the run took %s. Kubernetes %s (two kubelets, each with its own containerd and kube-proxy, in network namespaces of their own), Pushgateway %s, Prometheus %s scraping every %s through kubernetes_sd (role endpointslice, honor_labels), as a ServiceMonitor of the Prometheus Operator does.\n\n",
		rows[0].Date, runtime.NumCPU(), took, rows[0].Kubernetes, rows[0].Pushgateway, rows[0].Prometheus, harness.PrometheusScrapeInterval)
	fmt.Fprintf(&b, "Each arm: the community chart's persistence variant (unless said), its store preloaded with %d series (about %.0f MB); %d clients push like batch jobs, each push its own group (job `proof`, instance `p<client>-s<seq>`), pushed once, on a new connection to the Service's ClusterIP from inside the node network, one push at a time per client, at most every %s. The volume is a hostPath PersistentVolume without node affinity in a directory every node's mount namespace sees: on one host that behaves as a network volume. `upstream` is the chart as rendered; `product` is the same manifest in a namespace opted in to pushgateway-lifecycle (the chart installed on the nodes with its defaults: webhook, handoff gate, drain and readiness tuning on).\n\n",
		matrixPreload.Series(), float64(matrixPreload.Series()*matrixPreload.ValueBytes)/1e6, proofPushers, proofEvery)
	b.WriteString("| scenario | spec | acknowledged | lost at the store | lost in Prometheus | refused | no serving endpoint | replacement start to routed | handoff hold |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %d | %.2f s | %s | %s |\n", r.Scenario, r.Spec, r.Acknowledged, num(r.LostStore), num(r.LostPrometheus), r.Refused, r.NoEndpointSeconds, fl(r.StartToRoutedSeconds), fl(r.HandoffHoldSeconds))
	}
	b.WriteString("\nn/a: the figure does not apply (no store without persistence; no replacement routed; no gate).\n\n![The summary: per scenario and spec, acknowledged pushes lost in Prometheus and seconds without a serving endpoint](interruptions/summary.svg)\n\n## Goals\n\n")
	var lostGraceful, lostDefault []string
	worstNoEndpoint := 0.0
	for i, r := range results {
		row := rows[i]
		if r.arm.inject && graceful(r.arm.scenario) && (r.lostStore > 0 || r.lostProm > 0) {
			lostGraceful = append(lostGraceful, fmt.Sprintf("%s (store %s, Prometheus %s)", r.arm.scenario, num(row.LostStore), num(row.LostPrometheus)))
		}
		if r.arm.inject && r.arm.scenario == scenarioNoPersistence && r.lostProm > 0 {
			lostDefault = append(lostDefault, fmt.Sprint(r.lostProm))
		}
		if r.arm.inject && (r.arm.scenario == scenarioRecreate || r.arm.scenario == scenarioEviction || r.arm.scenario == scenarioDelete || r.arm.scenario == scenarioDrain) {
			worstNoEndpoint = max(worstNoEndpoint, r.noEndpointSeconds)
		}
	}
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	fmt.Fprintf(&b, "- The product's spec loses nothing at the store or in Prometheus in every graceful scenario: %s%s.\n", met(len(lostGraceful) == 0), list(lostGraceful))
	fmt.Fprintf(&b, "- The default chart (no persistence) with the product's spec loses nothing in Prometheus at a %s scrape interval: %s%s.\n", harness.PrometheusScrapeInterval, met(len(lostDefault) == 0), list(lostDefault))
	fmt.Fprintf(&b, "- No serving endpoint for at most 5 s per replacement (rollout, delete, eviction, drain; product's spec): %s (worst %.2f s).\n", met(worstNoEndpoint <= 5), worstNoEndpoint)
	for _, r := range results {
		if r.arm.scenario == scenarioCrash {
			fmt.Fprintf(&b, "- Crash, %s: %d acknowledged pushes lost; the oldest was acknowledged %s before the SIGKILL, against a persist interval of %s.\n", specOf(r), r.lost, secs(r.oldestLostBeforeKill), matrixCrashInterval)
		}
	}
	b.WriteString("\n## Scenarios\n\n")
	seen := map[string]bool{}
	for _, r := range results {
		if !seen[r.arm.scenario] {
			seen[r.arm.scenario] = true
			fmt.Fprintf(&b, "- `%s`: %s.\n", r.arm.scenario, scenarios[r.arm.scenario].what)
		}
	}
	b.WriteString("\n## Timelines\n\nOne picture per arm, drawn from the events the run recorded (the .jsonl beside each); t = 0 is the moment the old pod's deletion was seen (the SIGKILL for a crash).\n\n")
	for _, p := range pics {
		fmt.Fprintf(&b, "![%s](interruptions/%s)\n\n", strings.TrimSuffix(p, ".svg"), p)
	}
	return b.String()
}

func list(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return " (" + strings.Join(items, "; ") + ")"
}

func specOf(r *proofResult) string {
	if r.arm.inject {
		return "product"
	}
	return "upstream"
}

// summarySVG is the table's picture: one row per scenario, for each spec the acknowledged pushes
// Prometheus never stored (red when any, green when none) and the seconds without a serving
// endpoint, drawn as a bar on one scale for every row.
func summarySVG(rows []matrixRow) string {
	type cell struct {
		lost, acked int
		lostKnown   bool
		noEndpoint  float64
	}
	var order []string
	cells := map[string]map[string]cell{}
	maxNE := 1.0
	for _, r := range rows {
		if cells[r.Scenario] == nil {
			cells[r.Scenario] = map[string]cell{}
			order = append(order, r.Scenario)
		}
		c := cell{acked: r.Acknowledged, noEndpoint: r.NoEndpointSeconds}
		if r.LostPrometheus != nil {
			c.lost, c.lostKnown = *r.LostPrometheus, true
		}
		cells[r.Scenario][r.Spec] = c
		maxNE = max(maxNE, r.NoEndpointSeconds)
	}
	const rowH, top, left, colW, barW = 28, 56, 190, 330, 150
	w, h := left+2*colW+10, top+rowH*len(order)+40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", w, h)
	b.WriteString(`<text x="10" y="20" font-size="15" font-weight="bold">Acknowledged pushes Prometheus never stored, and seconds without a serving endpoint</text>` + "\n")
	for i, spec := range []string{"upstream", "product"} {
		x := left + i*colW
		fmt.Fprintf(&b, `<text x="%d" y="44" font-weight="bold">%s spec</text>`+"\n", x, spec)
	}
	for j, sc := range order {
		y := top + j*rowH
		if j%2 == 0 {
			fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="#f4f4f4"/>`+"\n", y, w, rowH)
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+18, sc)
		for i, spec := range []string{"upstream", "product"} {
			c, ok := cells[sc][spec]
			if !ok {
				continue
			}
			x := left + i*colW
			color, label := "#2e7d32", fmt.Sprintf("0 of %d lost", c.acked)
			if !c.lostKnown {
				color, label = "#777", "n/a"
			} else if c.lost > 0 {
				color, label = "#c62828", fmt.Sprintf("%d of %d lost", c.lost, c.acked)
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="120" height="20" rx="3" fill="%s"/><text x="%d" y="%d" fill="#fff">%s</text>`+"\n", x, y+4, color, x+6, y+18, label)
			bw := int(float64(barW) * c.noEndpoint / maxNE)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="12" fill="#9e9e9e"/><text x="%d" y="%d">%.1f s</text>`+"\n", x+128, y+8, bw, x+132+bw, y+18, c.noEndpoint)
		}
	}
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">grey bar: seconds without a serving endpoint (pushes refused), one scale for all rows, longest %.1f s</text>`+"\n", h-12, maxNE)
	b.WriteString("</svg>\n")
	return b.String()
}
