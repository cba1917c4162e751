package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/ociimage"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
	proof "github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/termination"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/timeline"
)

// proofNode runs the termination experiment on the real node (make proof-node). It is not part
// of `make test-node`: it takes minutes and writes docs/why-node.md and docs/proof-node/.
var proofNode = flag.Bool("proof", false, "run the termination experiment's three arms on the real node and write docs/why-node.md and docs/proof-node/ (make proof-node)")

const (
	proofService  = "pgw-prometheus-pushgateway"
	proofDataFile = "pushgateway.data"
	proofPushers  = 4
	proofEvery    = 50 * time.Millisecond
	proofWarmup   = 3 * time.Second
	proofTail     = 2 * time.Second
)

// proofPreload: large label values (see proof.Preload), sized so that the shutdown
// persist takes seconds: more than the kubelet's 2 s floor after a preStop that used up the
// grace period, far less than the 15 s budget the product adds.
var proofPreload = proof.Preload{Groups: 14, PerGroup: 1000, ValueBytes: 20000}

// proofArgs are what users add through the chart's extraArgs to make the persistence variant
// persist at all (the chart mounts the volume only). The interval is long so that only the
// shutdown persist counts, as in the replayed proof.
const proofArgs = `          args:
            - --persistence.file=/data/` + proofDataFile + `
            - --persistence.interval=1h
`

// chartExampleHook is the preStop the upstream chart's values.yaml shows, commented out.
const chartExampleHook = `          lifecycle:
            preStop:
              exec:
                command: ["sh", "-c", "sleep 30"]
`

// TestProofNode is the termination experiment of test/termination with nothing replayed: the
// kubelet runs the hook and sends the signals, the EndpointSlice controller and kube-proxy
// withdraw the endpoint, the pushers go through the Service's ClusterIP, and the replacement
// (the Deployment's Recreate) reads the persistence file from the same hostPath volume.
func TestProofNode(t *testing.T) {
	if !*proofNode {
		t.Skip("the real-node proof runs with -proof (make proof-node)")
	}
	if err := harness.NodeSupported(); err != nil {
		t.Fatal(err)
	}
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	pgwBin := pushgatewayBinary(t, root)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (Debian busybox-static) is needed for arm 2's `sh -c \"sleep 30\"`: %v", err)
	}
	// The upstream image (quay.io/prometheus/pushgateway) is built on quay.io/prometheus/busybox
	// and has a shell; the harness's image is the static binary only. Arm 2's exec hook needs
	// sh and sleep, so the proof's image adds busybox as both, under the upstream reference.
	spec := ociimage.Pushgateway(pgwBin, harness.PushgatewayImageRef, runtime.GOARCH)
	spec.Files = append(spec.Files,
		ociimage.File{Path: "/bin/sh", Source: busybox, Mode: 0o755},
		ociimage.File{Path: "/bin/sleep", Source: busybox, Mode: 0o755})
	imgTar := filepath.Join(t.TempDir(), "pushgateway-busybox.tar")
	if err := ociimage.WriteTarball(imgTar, spec); err != nil {
		t.Fatal(err)
	}

	// The store, written once on the host's loopback by a real Pushgateway's shutdown persist,
	// copied into each arm's volume before its Deployment starts.
	ps := &proof.Processes{}
	t.Cleanup(ps.StopAll)
	seed, err := proof.Seed(ctx, ps, pgwBin, t.TempDir(), proofPreload)
	if err != nil {
		t.Fatal(err)
	}
	ps.StopAll()
	t.Logf("preload: %d series, %.1f MB persisted; the seeding Pushgateway's shutdown persist took %.2fs", proofPreload.Series(), float64(seed.Bytes)/1e6, seed.PersistTook.Seconds())
	// What a replacement's start to routed cannot go below: Pushgateway answers /-/ready only
	// once it has loaded the store, so the same load is timed on the host, from the process
	// start to its first ready answer, on a copy of the file.
	restore, err := timeRestore(ctx, ps, pgwBin, seed.File, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ps.StopAll()
	t.Logf("a Pushgateway on the host loads that store and answers /-/ready %.2fs after its start", restore.Seconds())

	manifest, err := fixtures.ReadUpstreamChart("persistence.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withArgs := insertAfterPullPolicy(t, manifest, proofArgs)
	arm2 := insertAfterPullPolicy(t, withArgs, chartExampleHook)
	arm3 := mutateManifest(t, withArgs)

	// Arm 5 runs the product itself: the chart installed on the node (webhook and handoff
	// controller in pods, as users run them), the namespace opted in.
	whTar, _, err := harness.WebhookImage(os.Getenv("PGL_BINARY"))
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	n := harness.NewNode(t, harness.NodeOptions{Images: []string{imgTar, whTar}, Progress: testWriter{t}, LogDir: logDir})
	t.Logf("node Ready %.1fs after the start of the test", time.Since(started).Seconds())

	arms := []proofArm{
		{name: "1 upstream chart", file: "arm1-upstream-chart", ns: "proof1", manifest: withArgs},
		{name: "2 chart's commented example", file: "arm2-chart-example", ns: "proof2", manifest: arm2},
		{name: "3 pushgateway-lifecycle mutate", file: "arm3-mutate", ns: "proof3", manifest: arm3},
		{name: "4 upstream chart, pod deleted", file: "arm4-upstream-delete", ns: "proof4", manifest: withArgs, scenario: scenarioDelete},
		{name: "5 pushgateway-lifecycle webhook and handoff gate, pod deleted", file: "arm5-webhook-delete", ns: "proof5", manifest: withArgs, scenario: scenarioDelete, inject: true},
	}
	var results []*proofResult
	for _, a := range arms {
		if a.inject {
			chartStart := time.Now()
			if out, err := n.InstallChart(ctx, t.TempDir()); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			t.Logf("chart installed (webhook and handoff controller Ready) in %.1fs", time.Since(chartStart).Seconds())
		}
		r := runProofArm(ctx, t, n, a, seed.File, filepath.Join(logDir, "containerd.log"))
		results = append(results, r)
		t.Logf("arm %s: %s", a.name, r.summary())
	}

	pics := writeArmLogs(t, filepath.Join(root, "docs", "proof-node"), results)
	table := proofTable(results)
	fmt.Printf("\n%s\n", table)
	took := time.Since(started).Round(time.Second)
	if err := writeWhyNode(filepath.Join(root, "docs", "why-node.md"), results, seed, restore, table, pics, took); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote docs/why-node.md and docs/proof-node (%s); the run took %s", strings.Join(pics, ", "), took)

	for _, r := range results {
		if r.attempts == 0 || r.ackOld+r.ackNew == 0 {
			t.Errorf("arm %s: %d pushes, %d acknowledged: the load did not run", r.arm.name, r.attempts, r.ackOld+r.ackNew)
		}
		if !r.marker {
			t.Errorf("arm %s: the replacement did not restore the preloaded store from the volume", r.arm.name)
		}
	}
	if results[2].lost != 0 {
		t.Errorf("arm 3 (mutated spec) lost %d acknowledged pushes on the real node; want 0", results[2].lost)
	}
	// Arm 4 is the hard case the gate exists for: if it stops losing pushes, the experiment
	// no longer shows what arm 5 is judged against.
	if results[3].lost == 0 {
		t.Errorf("arm 4 (pod deleted, upstream spec) lost nothing: the experiment no longer shows the loss arm 5 must avoid")
	}
	if results[4].lost != 0 {
		t.Errorf("arm 5 (webhook and handoff gate, pod deleted) lost %d acknowledged pushes; want 0", results[4].lost)
	}
	if !results[4].gated {
		t.Errorf("arm 5: the replacement was not created with the handoff gate")
	}
	stopAndCheck(t, n)
}

// writeArmLogs writes each arm's events as <file>.jsonl into dir and draws every log there as
// an SVG timeline; it returns the pictures' names.
func writeArmLogs(t *testing.T, dir string, results []*proofResult) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		var b bytes.Buffer
		if err := timeline.Write(&b, r.log); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, r.arm.file+".jsonl"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pics, err := timeline.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pics
}

func pushgatewayBinary(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(root, "hack", "pushgateway.sh")).Output()
	if err != nil {
		t.Fatalf("hack/pushgateway.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func insertAfterPullPolicy(t *testing.T, manifest []byte, text string) []byte {
	t.Helper()
	anchor := []byte("          imagePullPolicy: IfNotPresent\n")
	if bytes.Count(manifest, anchor) != 1 {
		t.Fatalf("the manifest has %d container imagePullPolicy lines, want 1", bytes.Count(manifest, anchor))
	}
	return bytes.Replace(manifest, anchor, append(append([]byte{}, anchor...), text...), 1)
}

// mutateManifest runs the product's CLI (bin/pushgateway-lifecycle, `make build`) on the
// manifest: arm 3 is what the product does, not a copy of it.
func mutateManifest(t *testing.T, manifest []byte) []byte {
	t.Helper()
	bin := os.Getenv("PGL_BINARY")
	if bin == "" {
		root, _ := fixtures.RepoRoot()
		bin = filepath.Join(root, "bin", "pushgateway-lifecycle")
	}
	f := filepath.Join(t.TempDir(), "persistence.yaml")
	if err := os.WriteFile(f, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "mutate", "-f", f).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s mutate: %v\n%s", bin, err, ee.Stderr)
		}
		t.Fatalf("%s mutate: %v", bin, err)
	}
	return out
}

type proofArm struct {
	name, file, ns string
	manifest       []byte
	// scenario is how the pod goes away (interruptions_test.go); "" is a rollout of the
	// Recreate Deployment.
	scenario string
	// inject opts the namespace in to the webhook installed on the node.
	inject bool
	// noPersistence: the chart without a volume (its default); no store to seed or read back,
	// loss is counted in Prometheus only.
	noPersistence bool
	// prom, when set, is asked after the arm which acknowledged pushes it stored.
	prom *harness.Prometheus
}

type proofPush struct {
	pusher, seq int
	start, end  time.Time
	status      int
	err         string
}

type routeChange struct {
	at    time.Time
	route string
	what  string
}

type proofResult struct {
	arm  proofArm
	spec proof.Termination
	log  *timeline.Run

	attempts, ackOld, ackNew, refusedOld, noEndpoint, lost, other int
	otherKinds                                                    map[string]int
	marker                                                        bool
	// gated: the replacement was created with the handoff scheduling gate; heldFor is from its
	// creation to the gate's removal (seconds, -1 when not gated).
	gated   bool
	heldFor float64

	sigterm, exit, persistStart, persistEnd, newStart, newReady, routedNew float64 // seconds from the deletion, -1 unknown
	exitCode                                                               int32
	exitSource                                                             string
	oldNotReady, oldNotServing                                             float64 // the old endpoint in the EndpointSlice
	routes                                                                 []string

	// lostStore / lostProm: acknowledged pushes missing from the replacement's store and
	// from Prometheus; -1 where the figure does not apply (no store, no Prometheus).
	lostStore, lostProm int
	// noEndpoint seconds: the time, from the deletion on, when the EndpointSlice had no
	// serving endpoint (kube-proxy rejects).
	noEndpointSeconds float64
	// crash: seconds between the kill and the oldest lost push's acknowledgement (the bound's
	// figure), -1 when nothing was lost.
	oldestLostBeforeKill float64
	ran                  time.Time
}

func (r *proofResult) summary() string {
	return fmt.Sprintf("%d pushes: %d acked (old %d, new %d), %d lost, %d refused while old routed, %d refused with no endpoint, %d other %v; SIGTERM %.2fs, exit %.2fs (code %d), persist %.2f-%.2fs, replacement started %.2fs, routed %.2fs",
		r.attempts, r.ackOld+r.ackNew, r.ackOld, r.ackNew, r.lost, r.refusedOld, r.noEndpoint, r.other, r.otherKinds,
		r.sigterm, r.exit, r.exitCode, r.persistStart, r.persistEnd, r.newStart, r.routedNew)
}

// runProofArm deploys one arm, loads it, deletes its pod and records what happened.
func runProofArm(ctx context.Context, t *testing.T, n *harness.Node, a proofArm, seedFile, containerdLog string) *proofResult {
	t.Helper()
	// -1: not seen (an arm whose replacement is ready before the old endpoint stops serving
	// never has a moment with no serving endpoint).
	res := &proofResult{arm: a, otherKinds: map[string]int{}, oldNotReady: -1, oldNotServing: -1, routedNew: -1}
	manifest := bytes.ReplaceAll(a.manifest, []byte("namespace: monitoring"), []byte("namespace: "+a.ns))
	term, err := proof.FromManifests(manifest)
	if err != nil {
		t.Fatalf("arm %s: %v", a.name, err)
	}
	res.spec = term

	// The volume: a hostPath directory in the node's shared directory (the same host directory
	// in every node's mount namespace: with two nodes it behaves as a network volume would),
	// bound to the chart's PersistentVolumeClaim by a pre-bound PersistentVolume without node
	// affinity, so the chart's Deployment runs as rendered. Pushgateway runs as 65534.
	hostDir := filepath.Join(n.SharedDir, "pgw-proof", a.ns)
	dataFile := filepath.Join(hostDir, proofDataFile)
	var seedInfo os.FileInfo
	if !a.noPersistence {
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fixtures.CopyFile(seedFile, dataFile); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{hostDir, dataFile} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
		seedInfo, _ = os.Stat(dataFile)
	}
	pv := fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata:
  name: proof-%[1]s
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef:
    namespace: %[1]s
    name: %[2]s
  hostPath:
    path: %[3]s
    type: Directory
`, a.ns, proofService, hostDir)
	kubectl(t, n, nil, "create", "namespace", a.ns)
	if a.inject {
		kubectl(t, n, nil, "label", "namespace", a.ns, annotations.LabelInjection+"=enabled")
	}
	if !a.noPersistence {
		kubectl(t, n, []byte(pv), "apply", "-f", "-")
	}
	sc := scenarios[a.scenario]
	if sc.before != nil {
		sc.before(t, n, a)
	}
	kubectl(t, n, manifest, "apply", "-f", "-")
	pods := waitReady(t, n, a.ns, pgwSelector, 1, 4*time.Minute)
	old := pods[0]
	if sc.ready != nil {
		sc.ready(t, n, a)
	}
	if a.inject {
		// The webhook patched the pod at creation: its spec is the stored pod's, not the
		// manifest's.
		if term, err = proof.FromPodSpec(&old.Spec); err != nil {
			t.Fatalf("arm %s: %v", a.name, err)
		}
		res.spec = term
	}
	svc := serviceIP(t, n, a.ns, proofService)

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	routes := watchRoutes(wctx, t, n, a.ns, old.Name)
	podw := watchPods(wctx, t, n, a.ns, old.Name, a.scenario == scenarioCrash)
	persist := watchPersistDir(hostDir, proofDataFile)
	res.ran = time.Now()

	// The load: 4 clients, each one push at a time, at most every 50 ms, each push on a new
	// connection to the ClusterIP (as a batch job's push would be), dialled inside the node.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true}}
	var (
		mu     sync.Mutex
		pushes []proofPush
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for i := 0; i < proofPushers; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				next := time.Now().Add(proofEvery)
				p := proofPush{pusher: id, seq: seq, start: time.Now()}
				resp, err := client.Post(fmt.Sprintf("http://%s:9091/metrics/job/proof/instance/p%d-s%d", svc, id, seq), "text/plain; version=0.0.4",
					strings.NewReader(fmt.Sprintf("proof_push{pusher=\"%d\"} %d\n", id, seq)))
				if err != nil {
					p.err = errKind(err)
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					p.status = resp.StatusCode
				}
				p.end = time.Now()
				mu.Lock()
				pushes = append(pushes, p)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(time.Until(next)):
				}
			}
		}(i)
	}
	time.Sleep(proofWarmup)
	killed := sc.interrupt(ctx, t, n, a, &old)
	// Until the Service routes to the replacement (for a crash: to the restarted container,
	// after a moment with no serving endpoint), then a tail of load.
	deadline := time.Now().Add(4 * time.Minute)
	for !replaced(routes, a.scenario) {
		if time.Now().After(deadline) {
			t.Fatalf("arm %s: the Service did not route to a replacement within 4m; routes %v", a.name, routes.changes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(proofTail)
	close(stop)
	wg.Wait()
	tEnd := time.Now()
	pStart, pEnd := persist.Stop()
	wcancel()
	pw := podw.result()
	// t = 0 is the old pod's deletion (the Deployment controller scaling the old ReplicaSet
	// down), as the test's watch saw it.
	t0 := pw.deletionSeen
	if a.scenario == scenarioCrash {
		t0 = killed
	}
	if t0.IsZero() {
		t.Fatalf("arm %s: the old pod's deletion was never seen", a.name)
	}

	at := func(tm time.Time) float64 {
		if tm.IsZero() {
			return -1
		}
		return tm.Sub(t0).Seconds()
	}
	rec := []timeline.Event{{Kind: timeline.KindDeleted, T: 0}}
	add := func(k timeline.Kind, tm time.Time) {
		if !tm.IsZero() {
			rec = append(rec, timeline.Event{Kind: k, T: at(tm)})
		}
	}
	// The kubelet's SIGTERM: containerd's CRI StopContainer call (it signals the task at once);
	// the replacement's start: its StartContainer returning.
	sigterm, newStart := containerdTimes(containerdLog, pw.oldContainerID, pw.newContainerID)
	if term.HasPreStop {
		add(timeline.KindPreStop, pw.deletionSeen)
	}
	add(timeline.KindSIGTERM, sigterm)
	if a.scenario != scenarioCrash {
		// A crash has no shutdown persist; the directory watch saw a periodic one.
		add(timeline.KindPersistStart, pStart)
		add(timeline.KindPersistEnd, pEnd)
	}
	exit := pw.oldFinished
	if pw.oldExitCode == 137 {
		add(timeline.KindSIGKILL, exit)
	} else {
		add(timeline.KindExit, exit)
	}
	if newStart.IsZero() {
		newStart = pw.newStarted
	}
	add(timeline.KindNewStart, newStart)
	add(timeline.KindNewServing, pw.newReady)
	for _, c := range routes.changes() {
		rec = append(rec, timeline.Event{Kind: timeline.KindRoute, T: at(c.at), Route: c.route})
		res.routes = append(res.routes, fmt.Sprintf("%s %.2fs", c.what, at(c.at)))
		switch {
		case c.what == "old endpoint not ready (terminating, serving)":
			res.oldNotReady = at(c.at)
		case c.route == timeline.RouteNone && res.oldNotServing < 0:
			res.oldNotServing = at(c.at)
		case c.route == timeline.RouteNew:
			res.routedNew = at(c.at)
		case a.scenario == scenarioCrash && c.route == timeline.RouteOld && res.oldNotServing >= 0 && res.routedNew < 0:
			// The restarted container's endpoint ready again.
			res.routedNew = at(c.at)
		}
	}
	rec = append(rec, timeline.Event{Kind: timeline.KindEnd, T: at(tEnd)})

	var present map[string]bool
	res.lostStore, res.lostProm = -1, -1
	if !a.noPersistence {
		present, res.marker = storedOnReplacement(t, n, pw.newIP)
		res.lostStore = 0
	}
	var inProm map[string]bool
	if a.prom != nil {
		inProm = storedInPrometheus(ctx, t, a.prom, a.ns, pushes, res.ran)
		res.lostProm = 0
	}
	// The fate drawn and counted as lost is the one a user sees: missing from the store when
	// there is one, else from Prometheus.
	if present == nil {
		present = inProm
	}
	res.oldestLostBeforeKill = -1
	newStartT := newStart
	for _, p := range pushes {
		res.attempts++
		route := routes.at(p.start)
		id := fmt.Sprintf("p%d-s%d", p.pusher, p.seq)
		if p.status/100 == 2 {
			if res.lostStore >= 0 && !present[id] {
				res.lostStore++
			}
			if inProm != nil && !inProm[id] {
				res.lostProm++
			}
		}
		var f timeline.Fate
		switch {
		case p.status/100 == 2 && !present[id]:
			f = timeline.FateLost
			res.lost++
			if a.scenario == scenarioCrash && !killed.IsZero() {
				res.oldestLostBeforeKill = max(res.oldestLostBeforeKill, killed.Sub(p.end).Seconds())
			}
		case p.status/100 == 2 && !newStartT.IsZero() && p.end.After(newStartT):
			f = timeline.FateAckNew
			res.ackNew++
		case p.status/100 == 2:
			f = timeline.FateAckOld
			res.ackOld++
		case p.err != "" && route == timeline.RouteOld:
			f = timeline.FateRefused
			res.refusedOld++
		case p.err != "" && route == timeline.RouteNone:
			f = timeline.FateNoEndpoint
			res.noEndpoint++
		default:
			f = timeline.FateOther
			res.other++
			res.otherKinds[fmt.Sprintf("%s: %d %s", route, p.status, p.err)]++
		}
		if f == timeline.FateLost {
			res.ackOld++ // a lost push was acknowledged by the old pod
		}
		rec = append(rec, timeline.Event{Kind: timeline.KindPush, T: at(p.start), D: p.end.Sub(p.start).Seconds(), Pusher: p.pusher, Fate: f})
	}
	res.sigterm, res.exit, res.exitCode = at(sigterm), at(exit), pw.oldExitCode
	res.persistStart, res.persistEnd = at(pStart), at(pEnd)
	res.newStart, res.newReady = at(newStart), at(pw.newReady)
	res.gated, res.heldFor = !pw.newGatedSeen.IsZero(), -1
	if res.gated && !pw.newUngatedSeen.IsZero() {
		res.heldFor = pw.newUngatedSeen.Sub(pw.newGatedSeen).Seconds()
	}
	res.noEndpointSeconds = noEndpointSeconds(routes.changes(), t0, tEnd)
	after, _ := os.Stat(dataFile)
	res.exitSource = "finishedAt (1 s resolution)"
	persisted := after != nil && seedInfo != nil && !after.ModTime().Equal(seedInfo.ModTime())
	note := fmt.Sprintf("real node: kubelet, EndpointSlice controller and kube-proxy (iptables); %d clients through the ClusterIP, each at most every %s; shutdown persist written: %t",
		proofPushers, proofEvery, persisted)
	res.log = &timeline.Run{Arm: a.name, Spec: term.String(), Note: note, Events: rec}

	if sc.after != nil {
		sc.after(t, n, a)
	}
	// Free the replacement's memory for the next arm.
	kubectl(t, n, nil, "-n", a.ns, "scale", "deployment", proofService, "--replicas=0")
	return res
}

func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	}
	return err.Error()
}

// routeWatch follows the Service's EndpointSlices as the API server has them: the old pod's
// endpoint serving (kube-proxy routes to it, as a terminating endpoint once it is not ready:
// its fallback when no ready endpoint exists), no serving endpoint (kube-proxy rejects), or the
// replacement ready. kube-proxy applies each change a little later; that lag is part of what
// the pushes' fates show.
type routeWatch struct {
	mu   sync.Mutex
	list []routeChange
}

func (w *routeWatch) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.list) == 0 {
		return ""
	}
	return w.list[len(w.list)-1].route
}

func (w *routeWatch) changes() []routeChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]routeChange(nil), w.list...)
}

func (w *routeWatch) at(tm time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := timeline.RouteOld
	for _, c := range w.list {
		if c.at.After(tm) {
			break
		}
		r = c.route
	}
	return r
}

func watchRoutes(ctx context.Context, t *testing.T, n *harness.Node, ns, oldPod string) *routeWatch {
	t.Helper()
	w := &routeWatch{}
	wi, err := n.Clientset.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + proofService})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer wi.Stop()
		lastWhat := ""
		for ev := range wi.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			route, what := timeline.RouteNone, "no serving endpoint"
			for _, e := range s.Endpoints {
				isOld := e.TargetRef != nil && e.TargetRef.Name == oldPod
				ready := e.Conditions.Ready != nil && *e.Conditions.Ready
				serving := e.Conditions.Serving != nil && *e.Conditions.Serving
				switch {
				case !isOld && ready:
					route, what = timeline.RouteNew, "replacement endpoint ready"
				case isOld && ready && route != timeline.RouteNew:
					route, what = timeline.RouteOld, "old endpoint ready"
				case isOld && serving && route != timeline.RouteNew:
					route, what = timeline.RouteOld, "old endpoint not ready (terminating, serving)"
				}
			}
			if ev.Type == "DELETED" {
				route, what = timeline.RouteNone, "slice deleted"
			}
			if what == lastWhat {
				continue
			}
			lastWhat = what
			w.mu.Lock()
			w.list = append(w.list, routeChange{at: time.Now(), route: route, what: what})
			w.mu.Unlock()
		}
	}()
	return w
}

type podTimes struct {
	deletionSeen                   time.Time
	oldContainerID, newContainerID string
	oldFinished                    time.Time
	oldExitCode                    int32
	newStarted, newReady           time.Time
	newIP                          string
	// newGatedSeen / newUngatedSeen: the replacement first seen with the handoff gate, and
	// first seen without it after that.
	newGatedSeen, newUngatedSeen time.Time
}

type podWatch struct {
	mu   sync.Mutex
	done chan struct{}
	r    podTimes
}

func (w *podWatch) result() podTimes {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.r
}

// watchPods follows the old pod and its replacement. With restart (a crash), the replacement is
// the old pod's restarted container: same pod, same IP.
func watchPods(ctx context.Context, t *testing.T, n *harness.Node, ns, oldPod string, restart bool) *podWatch {
	t.Helper()
	w := &podWatch{done: make(chan struct{})}
	wi, err := n.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: pgwSelector})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			now := time.Now()
			w.mu.Lock()
			if p.Name == oldPod && restart {
				w.r.newIP = p.Status.PodIP
				for _, cs := range p.Status.ContainerStatuses {
					if cs.RestartCount == 0 {
						continue
					}
					if cs.LastTerminationState.Terminated != nil && w.r.oldFinished.IsZero() {
						w.r.oldFinished = cs.LastTerminationState.Terminated.FinishedAt.Time
						w.r.oldExitCode = cs.LastTerminationState.Terminated.ExitCode
						w.r.oldContainerID = strings.TrimPrefix(cs.LastTerminationState.Terminated.ContainerID, "containerd://")
					}
					if cs.State.Running != nil {
						w.r.newContainerID = strings.TrimPrefix(cs.ContainerID, "containerd://")
						w.r.newStarted = cs.State.Running.StartedAt.Time
					}
					if cs.Ready && w.r.newReady.IsZero() {
						w.r.newReady = now
					}
				}
			} else if p.Name == oldPod {
				if p.DeletionTimestamp != nil && w.r.deletionSeen.IsZero() {
					w.r.deletionSeen = now
				}
				for _, cs := range p.Status.ContainerStatuses {
					if cs.ContainerID != "" {
						w.r.oldContainerID = strings.TrimPrefix(cs.ContainerID, "containerd://")
					}
					if cs.State.Terminated != nil {
						w.r.oldFinished = cs.State.Terminated.FinishedAt.Time
						w.r.oldExitCode = cs.State.Terminated.ExitCode
					}
				}
			} else {
				gated := slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == annotations.SchedulingGateHandoff })
				switch {
				case gated && w.r.newGatedSeen.IsZero():
					w.r.newGatedSeen = now
				case !gated && !w.r.newGatedSeen.IsZero() && w.r.newUngatedSeen.IsZero():
					w.r.newUngatedSeen = now
				}
				w.r.newIP = p.Status.PodIP
				for _, cs := range p.Status.ContainerStatuses {
					if cs.ContainerID != "" {
						w.r.newContainerID = strings.TrimPrefix(cs.ContainerID, "containerd://")
					}
					if cs.State.Running != nil {
						w.r.newStarted = cs.State.Running.StartedAt.Time
					}
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && w.r.newReady.IsZero() {
						w.r.newReady = now
					}
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

var containerdTime = regexp.MustCompile(`time="([^"]+)"`)

// containerdTimes reads containerd's log (info level): when the CRI StopContainer for the old
// container came in (the kubelet's SIGTERM, after the preStop hook) and when the replacement's
// StartContainer returned.
func containerdTimes(path, oldID, newID string) (sigterm, newStart time.Time) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		m := containerdTime.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		if oldID != "" && sigterm.IsZero() && strings.Contains(line, "StopContainer for") && strings.Contains(line, oldID) {
			sigterm = tm
		}
		if newID != "" && newStart.IsZero() && strings.Contains(line, "StartContainer for") && strings.Contains(line, newID) && strings.Contains(line, "returns successfully") {
			newStart = tm
		}
	}
	return
}

// persistDirWatch sees the shutdown persist from outside the pod: Pushgateway writes
// <file>.in_progress.<random> and renames it over <file> (storage/diskmetricstore.go). The
// volume is a directory of the host, so the test polls it directly.
type persistDirWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	start, end time.Time
}

func watchPersistDir(dir, file string) *persistDirWatch {
	w := &persistDirWatch{stop: make(chan struct{}), done: make(chan struct{})}
	prefix := file + ".in_progress."
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			entries, err := os.ReadDir(dir)
			now := time.Now()
			if err == nil {
				seen := false
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), prefix) {
						seen = true
					}
				}
				w.mu.Lock()
				switch {
				case seen && w.start.IsZero():
					w.start = now
				case !seen && !w.start.IsZero() && w.end.IsZero():
					w.end = now
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *persistDirWatch) Stop() (start, end time.Time) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.start, w.end
}

// storedOnReplacement removes the preload from the replacement (to keep the query small) and
// lists the instance labels of the pushed groups it has, and whether the preload marker is
// there (the store was restored from the volume at all).
func storedOnReplacement(t *testing.T, n *harness.Node, ip string) (map[string]bool, bool) {
	t.Helper()
	c := n.HTTPClient(2 * time.Minute)
	base := "http://" + ip + ":9091"
	do := func(method, url, body string) *http.Response {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		if resp.StatusCode/100 != 2 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
		}
		return resp
	}
	for g := 0; g < proofPreload.Groups; g++ {
		do(http.MethodDelete, fmt.Sprintf("%s/metrics/job/preload/instance/%d", base, g), "").Body.Close()
	}
	// A checked push returns after the store's loop has processed everything queued before it.
	do(http.MethodPost, base+"/metrics/job/proof-sync", "proof_sync 1\n").Body.Close()
	resp := do(http.MethodGet, base+"/api/v1/metrics", "")
	defer resp.Body.Close()
	var body struct {
		Data []struct {
			Labels map[string]string `json:"labels"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
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
	return present, marker
}

func gateText(r *proofResult) string {
	if !r.gated {
		return ""
	}
	return fmt.Sprintf("the replacement was created with the handoff gate, lifted %s later; ", secs(r.heldFor))
}

func startToRouted(r *proofResult) string {
	if r.newStart < 0 || r.routedNew < 0 {
		return "not seen"
	}
	return fmt.Sprintf("%.2f s", r.routedNew-r.newStart)
}

func secs(s float64) string {
	if s < 0 {
		return "not seen"
	}
	return fmt.Sprintf("%.2f s", s)
}

func proofTable(results []*proofResult) string {
	var b strings.Builder
	b.WriteString("| arm | pod spec | SIGTERM (containerd StopContainer) | persist (start - end) | old container exit (code) | pushes attempted | refused/reset while old endpoint served | acknowledged (old + new pod) | **acknowledged lost** | refused with no endpoint | other | replacement started / routed to | handoff gate held |\n")
	b.WriteString("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range results {
		persist := "not seen"
		if r.persistStart >= 0 {
			persist = secs(r.persistStart) + " - "
			if r.persistEnd >= 0 {
				persist += secs(r.persistEnd)
			} else {
				persist += "**cut (SIGKILL)**"
			}
		}
		code := fmt.Sprintf("%d", r.exitCode)
		if r.exitCode == 137 {
			code = "**137: SIGKILL**"
		}
		held := "no gate"
		if r.gated {
			held = secs(r.heldFor)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s (%s) | %d | %d | %d (%d + %d) | %d | %d | %d | %s / %s | %s |\n",
			r.arm.name, r.spec, secs(r.sigterm), persist, secs(r.exit), code, r.attempts, r.refusedOld,
			r.ackOld+r.ackNew, r.ackOld, r.ackNew, r.lost, r.noEndpoint, r.other, secs(r.newStart), secs(r.routedNew), held)
	}
	return b.String()
}

// timeRestore starts a Pushgateway on a copy of the store and returns the time from its start
// to its first ready answer (it listens only once the store is loaded).
func timeRestore(ctx context.Context, ps *proof.Processes, bin, store, dir string) (time.Duration, error) {
	file := filepath.Join(dir, "restore.data")
	if err := fixtures.CopyFile(store, file); err != nil {
		return 0, err
	}
	start := time.Now()
	p, err := ps.Start(bin, "restore", file, dir)
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := p.WaitReady(rctx); err != nil {
		return 0, fmt.Errorf("the restoring Pushgateway never answered /-/ready: %w\n%s", err, p.Log())
	}
	return time.Since(start), nil
}

func writeWhyNode(path string, results []*proofResult, seed *proof.Seeded, restore time.Duration, table string, pics []string, took time.Duration) error {
	var b strings.Builder
	b.WriteString("<!-- Written by `make proof-node` (test/node: TestProofNode -proof). Regenerate, do not edit by hand. -->\n")
	b.WriteString("# Why, on a real node: five arms with nothing replayed\n\n")
	b.WriteString("[Back to the replayed proof](why.md). **Reproduce:** `make proof-node` (root; see [real-node.md](real-node.md)).\n\n")
	fmt.Fprintf(&b, "Measured %s on %d cores, %s/%s; the run (images, seeding, node start, the chart's install, five arms, clean-up check not included) took %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, took)
	b.WriteString("![Timelines of the arms on the real node](proof-node/timeline.svg)\n\n")
	b.WriteString("The pictures are drawn by the replay's renderer: its grey \"503: no endpoint\" is, on this node, kube-proxy rejecting the connection (`connection refused`) while the Service has no serving endpoint.\n\n")
	fmt.Fprintf(&b, "Same experiment as [why.md](why.md), on the one-node cluster of `make test-node`: the upstream chart's `persistence.yaml` "+
		"(with `--persistence.file=/data/%s --persistence.interval=1h` added as users do through `extraArgs`), its PersistentVolumeClaim bound to a "+
		"hostPath PersistentVolume in the node's own directory, preloaded with %d series (%.1f MB persisted; the seeding Pushgateway's shutdown persist took %.2f s on the host, "+
		"and a Pushgateway started on a copy of it answered `/-/ready` %.2f s after its start: it listens only once the store is loaded, so no replacement is routed to sooner). "+
		"%d clients push through the Service's ClusterIP (kube-proxy, iptables mode), each at most every %s, each push on a new connection, dialled from inside the node's network namespace. "+
		"In arms 1-3 the pod is replaced by a rollout (`kubectl rollout restart`: a template annotation), so the Deployment's `Recreate` deletes the old pod and creates the replacement only once it is gone. "+
		"In arms 4 and 5 the pod is deleted (`kubectl delete pod`; an eviction or a drain does the same), so the ReplicaSet creates the replacement at once, beside the terminating pod; "+
		"arm 5 runs the product as users install it (the chart on the node: webhook and handoff controller in pods, the namespace opted in), so the replacement is created with the scheduling gate `pushgateway-lifecycle.io/handoff` and scheduled only once the old pod has stopped. "+
		"the kubelet runs the preStop hook and sends the signals; the EndpointSlice controller and kube-proxy withdraw the endpoint; "+
		"the replacement reads the persistence file from the same volume. Afterwards the replacement is queried (`/api/v1/metrics`) for every acknowledged push.\n\n",
		proofDataFile, seed.Preload.Series(), float64(seed.Bytes)/1e6, seed.PersistTook.Seconds(), restore.Seconds(), proofPushers, proofEvery)
	b.WriteString("Times are seconds from the old pod's deletion (the Deployment controller scaling the old ReplicaSet down, or the test's delete, as the test's watch saw it). SIGTERM is containerd's CRI `StopContainer` for the old container (its log, nanoseconds); " +
		"the persist is Pushgateway's `<file>.in_progress.*` file appearing and being renamed (polled every 2 ms on the volume); the old container's exit is its `finishedAt` " +
		"(the API keeps whole seconds); the replacement's start is containerd's `StartContainer ... returns successfully`; routed to is the replacement's endpoint ready in the EndpointSlice.\n\n")
	b.WriteString(table)
	b.WriteString("\nEndpointSlice changes seen by the test (the API server's view; kube-proxy applies each a little later):\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- **%s**: %s\n", r.arm.name, strings.Join(r.routes, "; "))
	}
	b.WriteString("\nOther outcomes (route at sending: status, error):\n\n")
	for _, r := range results {
		keys := make([]string, 0, len(r.otherKinds))
		for k := range r.otherKinds {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s x%d", k, r.otherKinds[k]))
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		fmt.Fprintf(&b, "- **%s**: %s\n", r.arm.name, strings.Join(parts, "; "))
	}
	b.WriteString("\n## Each arm in order\n\n")
	for _, r := range results {
		stopped := "stopped serving it at " + secs(r.oldNotServing)
		if r.oldNotServing < 0 {
			stopped = "served it until the replacement was routed to"
		}
		fmt.Fprintf(&b, "- **%s**: SIGTERM at %s; the EndpointSlice marked the old endpoint terminating at %s and %s; "+
			"%d pushes were refused or reset while it was still served, %d refused by kube-proxy with no endpoint; the persist ran %s - %s; "+
			"the old container exited at %s (code %d); %sthe replacement started at %s and was routed to at %s (%s after its start); %d acknowledged pushes lost.\n",
			r.arm.name, secs(r.sigterm), secs(r.oldNotReady), stopped, r.refusedOld, r.noEndpoint, secs(r.persistStart), secs(r.persistEnd),
			secs(r.exit), r.exitCode, gateText(r), secs(r.newStart), secs(r.routedNew), startToRouted(r), r.lost)
	}
	b.WriteString("\nWhat these numbers say, and how they differ from the replay: [real-node.md, \"The proof on the node\"](real-node.md#the-proof-on-the-node).\n")
	b.WriteString("\nA pod deleted directly (arm 4) is replaced at once, beside the terminating pod: the replacement reads the volume before the old pod's shutdown persist, " +
		"so every push the old pod acknowledged after that read is lost, whatever the pod spec (the first run of this test measured it for all three specs: " +
		"[proof-node-delete/why-node-delete.md](proof-node-delete/why-node-delete.md)). Arm 5 is the same delete with the product installed: the handoff gate holds the replacement until the old pod has stopped.\n")
	b.WriteString("\nEach arm alone, with its event log: ")
	var links []string
	for _, r := range results {
		links = append(links, fmt.Sprintf("[%s](proof-node/%s.svg) ([events](proof-node/%s.jsonl))", r.arm.name, r.arm.file, r.arm.file))
	}
	b.WriteString(strings.Join(links, ", ") + ".\n")
	_ = pics
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
