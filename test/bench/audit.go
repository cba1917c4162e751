package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// AuditBench is `pushgateway-lifecycle audit -A` on a control plane holding Pods pods in
// Namespaces namespaces (one Deployment and ReplicaSet each).
type AuditBench struct {
	Pods       int `json:"pods"`
	Namespaces int `json:"namespaces"`
	// Unprotected is how many of the pods were created as the webhook would not have left
	// them (the rest carry what the engine writes): the report must find exactly these.
	Unprotected int `json:"unprotected"`
	// SetupSeconds is the creation of every object through the API server with Clients
	// parallel clients (no kube-controller-manager: pods are created directly).
	SetupSeconds float64    `json:"setup_s"`
	PodsPerSec   float64    `json:"setup_pods_per_s"`
	Clients      int        `json:"setup_clients"`
	Runs         []AuditRun `json:"runs"`
}

// AuditRun is one output format, median wall of the runs and the largest peak RSS.
type AuditRun struct {
	Output      string  `json:"output"`
	WallMs      float64 `json:"wall_ms"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	OutputBytes int     `json:"output_bytes"`
	ExitCode    int     `json:"exit_code"`
}

// RunAudit builds the cluster and times the audit, runs times per output format.
func RunAudit(ctx context.Context, bin string, pods, namespaces, runs, clients int, log func(string, ...any)) (*AuditBench, error) {
	// envtest logs through controller-runtime; without a logger it prints a stack trace instead.
	ctrllog.SetLogger(logr.Discard())
	cp, err := startControlPlane(log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	res := &AuditBench{Pods: pods, Namespaces: namespaces, Clients: clients}
	t1 := time.Now()
	if res.Unprotected, err = populate(ctx, cp, pods, namespaces, clients); err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(t1).Seconds()
	res.PodsPerSec = float64(pods) / res.SetupSeconds
	log("  %d pods in %d namespaces created in %.0f s (%.0f pods/s, %d clients)", pods, namespaces, res.SetupSeconds, res.PodsPerSec, clients)

	// The formats alternate run by run, so that a noisy moment on the shared machine does not
	// land on one format's runs only.
	formats := []string{"table", "json"}
	walls := map[string][]float64{}
	res.Runs = make([]AuditRun, len(formats))
	for i := 0; i < runs; i++ {
		for f, format := range formats {
			args := []string{"audit", "-A", "--kubeconfig=" + cp.KubeconfigPath}
			if format != "table" {
				args = append(args, "-o", format)
			}
			wall, rss, out, code, err := measure(bin, args...)
			if err != nil {
				return nil, err
			}
			if err := checkAudit(format, out, pods, namespaces, res.Unprotected); err != nil {
				return nil, err
			}
			walls[format] = append(walls[format], wall)
			run := &res.Runs[f]
			run.Output = format
			run.PeakRSSMiB = max(run.PeakRSSMiB, rss)
			run.OutputBytes, run.ExitCode = len(out), code
		}
	}
	for f, format := range formats {
		w := walls[format]
		sort.Float64s(w)
		res.Runs[f].WallMs = w[len(w)/2]
		log("  audit -A -o %s: median %.0f ms of %d runs (%.0f..%.0f), peak RSS %.1f MiB", format, res.Runs[f].WallMs, len(w), w[0], w[len(w)-1], res.Runs[f].PeakRSSMiB)
	}
	return res, nil
}

// populate creates namespaces, each with a ServiceAccount, a Deployment, its ReplicaSet and
// pods/namespaces pods owned by it; every fifth pod is left as if created without the webhook.
func populate(ctx context.Context, cp *harness.ControlPlane, pods, namespaces, clients int) (int, error) {
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	tmpl, err := podgen.TemplatePod()
	if err != nil {
		return 0, err
	}
	dep, err := podgen.UpstreamDeployment()
	if err != nil {
		return 0, err
	}
	pol := policy.Default()
	const hash = "5d8f7c9b4"
	perNS := pods / namespaces
	var unprotected atomic.Int64
	work := make(chan int)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				if err := populateNS(ctx, c, n, perNS, tmpl, dep, pol, hash, &unprotected); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for n := 0; n < namespaces; n++ {
		select {
		case work <- n:
		case err := <-errs:
			close(work)
			wg.Wait()
			return 0, err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return int(unprotected.Load()), nil
}

func populateNS(ctx context.Context, c kubernetes.Interface, n, perNS int, tmpl *corev1.Pod, dep *appsv1.Deployment, pol *policy.Policy, hash string, unprotected *atomic.Int64) error {
	ns := fmt.Sprintf("team-%03d", n)
	create := metav1.CreateOptions{}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pushgateway-lifecycle.io/injection": "enabled"}}}, create); err != nil {
		return err
	}
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tmpl.Spec.ServiceAccountName}}, create); err != nil {
		return err
	}
	d := dep.DeepCopy()
	d.Namespace, d.ResourceVersion = ns, ""
	d.Spec.Replicas = ptr.To(int32(perNS))
	dc, err := c.AppsV1().Deployments(ns).Create(ctx, d, create)
	if err != nil {
		return err
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: ns,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dc.Name, UID: dc.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(perNS)), Selector: d.Spec.Selector, Template: d.Spec.Template}}
	rs.Spec.Template.Labels = copyLabels(d.Spec.Template.Labels, hash)
	rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: copyLabels(d.Spec.Selector.MatchLabels, hash)}
	rsc, err := c.AppsV1().ReplicaSets(ns).Create(ctx, rs, create)
	if err != nil {
		return err
	}
	for i := 0; i < perNS; i++ {
		p := tmpl.DeepCopy()
		p.Name, p.GenerateName, p.Namespace = rs.Name+"-"+strconv.Itoa(i), "", ns
		p.Labels = copyLabels(p.Labels, hash)
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rsc.Name, UID: rsc.UID, Controller: ptr.To(true)}}
		if i%5 == 4 {
			unprotected.Add(1)
		} else {
			// What the webhook stores: the engine's own mutation.
			p, _ = engine.Mutate(p, ns, pol)
		}
		if _, err := c.CoreV1().Pods(ns).Create(ctx, p, create); err != nil {
			return err
		}
	}
	return nil
}

func copyLabels(in map[string]string, hash string) map[string]string {
	out := map[string]string{"pod-template-hash": hash}
	for k, v := range in {
		out[k] = v
	}
	return out
}

// measure runs the binary under GNU time (see RunOffline for why not wait4's rusage).
func measure(bin string, args ...string) (wallMs, rssMiB float64, stdout []byte, code int, err error) {
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "maxrss-kib=%M", bin}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.SysProcAttr = childAttr()
	t := time.Now()
	runErr := cmd.Run()
	wallMs = ms(time.Since(t))
	if runErr != nil {
		var ee *exec.ExitError
		if !asExit(runErr, &ee) {
			return 0, 0, nil, 0, runErr
		}
		code = ee.ExitCode()
	}
	_, kib, found := strings.Cut(stderr.String(), "maxrss-kib=")
	v, perr := strconv.ParseFloat(strings.TrimSpace(kib), 64)
	if !found || perr != nil {
		return 0, 0, nil, 0, fmt.Errorf("audit: no peak RSS from /usr/bin/time: %q", stderr.String())
	}
	return wallMs, v / 1024, out.Bytes(), code, nil
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError) //nolint:errorlint // exec returns it unwrapped
	*ee = e
	return ok
}

// checkAudit proves the run read everything: every pod and workload, exactly the unprotected ones.
func checkAudit(format string, out []byte, pods, namespaces, unprotected int) error {
	if format == "json" {
		var r audit.Report
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("audit -o json: %w", err)
		}
		s := r.Summary
		if s.Pods != pods || s.Workloads != namespaces || s.ByState[audit.StateUnprotected] != unprotected ||
			s.ByState[audit.StateProtected] != pods-unprotected || len(r.Errors) > 0 {
			return fmt.Errorf("audit -o json: summary %+v, errors %v; want %d pods, %d workloads, %d unprotected", s, r.Errors, pods, namespaces, unprotected)
		}
		// The owners were resolved (ReplicaSet -> Deployment, from the cluster-wide list) and
		// every template judged: a restart of each fixes its pods.
		for _, w := range r.Workloads {
			if w.Kind != "Deployment" || w.Template != audit.TemplateMutated || w.Fix != "kubectl rollout restart deployment/"+w.Name+" -n "+w.Namespace {
				return fmt.Errorf("audit -o json: workload %+v", w)
			}
		}
		return nil
	}
	want := fmt.Sprintf("%d pods in %d workloads: %d Protected, %d Unprotected", pods, namespaces, pods-unprotected, unprotected)
	if !bytes.Contains(out, []byte(want)) {
		return fmt.Errorf("audit table: no line %q in %d bytes", want, len(out))
	}
	return nil
}

// Print writes the audit part of section 4.
func (a *AuditBench) Print(out io.Writer) {
	fmt.Fprintf(out, "\n4b. `pushgateway-lifecycle audit -A`: %d pods (%d unprotected) in %d namespaces, %d Deployments (median wall of the runs; setup %.0f s at %.0f pods/s with %d clients)\n",
		a.Pods, a.Unprotected, a.Namespaces, a.Namespaces, a.SetupSeconds, a.PodsPerSec, a.Clients)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "output\twall ms\tpeak RSS MiB\toutput bytes\texit code\t")
	for _, r := range a.Runs {
		fmt.Fprintf(w, "%s\t%.0f\t%.1f\t%d\t%d\t\n", r.Output, r.WallMs, r.PeakRSSMiB, r.OutputBytes, r.ExitCode)
	}
	_ = w.Flush()
}

// Targets adds the audit's figures for reading (the issue sets no goal for them).
func (a *AuditBench) Targets(r *Report) {
	for _, run := range a.Runs {
		r.reading("section 4b: audit of %d pods / %d namespaces, -o %s: %.0f ms, peak RSS %.1f MiB, exit code %d (1: unprotected pods found, as built)",
			a.Pods, a.Namespaces, run.Output, run.WallMs, run.PeakRSSMiB, run.ExitCode)
	}
}
