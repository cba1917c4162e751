// Package audit proves `pushgateway-lifecycle audit` against a real kube-apiserver, etcd and
// kube-controller-manager: pods created before the webhook was registered, while it was down,
// with invalid annotations, edited after creation, in namespaces not opted in; the table and
// the JSON; a ServiceAccount without rights; a namespace that does not exist; an unreachable
// API server. The binary under test is the real one, run as a user would run it.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

const (
	nsIn  = "audit-in"
	nsOut = "audit-out"
)

type env struct {
	cp   *harness.ControlPlane
	bin  string
	port int
	wh   *harness.Webhook
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// run runs the real binary's audit with the admin kubeconfig unless args name another.
func (e *env) run(t *testing.T, args ...string) result {
	t.Helper()
	if !hasFlag(args, "--kubeconfig") {
		args = append([]string{"--kubeconfig=" + e.cp.KubeconfigPath}, args...)
	}
	return e.runEnv(t, "", args...)
}

// runEnv runs audit with KUBECONFIG set to kubeconfig and no other ambient configuration
// (HOME is empty, so there is no ~/.kube/config).
func (e *env) runEnv(t *testing.T, kubeconfig string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"audit"}, args...)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "KUBECONFIG=" + kubeconfig}
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: se.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("audit %v: %v", args, err)
	}
	var shown []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--kubeconfig") {
			shown = append(shown, a)
		}
	}
	t.Logf("audit %s: exit %d in %s", strings.Join(shown, " "), r.code, r.elapsed.Round(time.Millisecond))
	return r
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, f) {
			return true
		}
	}
	return false
}

func (r result) report(t *testing.T) *audit.Report {
	t.Helper()
	var rep audit.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("decoding the JSON report: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	if rep.APIVersion != audit.APIVersion || rep.Kind != audit.Kind {
		t.Errorf("report type %q %q", rep.APIVersion, rep.Kind)
	}
	return &rep
}

func podsByName(rep *audit.Report) map[string]audit.Pod {
	m := map[string]audit.Pod{}
	for _, p := range rep.Pods {
		m[p.Namespace+"/"+p.Name] = p
	}
	return m
}

func workload(rep *audit.Report, ns, kind, name string) *audit.Workload {
	for i := range rep.Workloads {
		w := &rep.Workloads[i]
		if w.Namespace == ns && w.Kind == kind && w.Name == name {
			return w
		}
	}
	return nil
}

var chartImage = "quay.io/prometheus/pushgateway:v1.11.3"

func podTemplate(instance string, ann map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{annotations.LabelAppName: "prometheus-pushgateway", "app.kubernetes.io/instance": instance},
			Annotations: ann,
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: chartImage}}},
	}
}

func (e *env) deployment(ctx context.Context, t *testing.T, ns, name string, replicas int32, ann map[string]string) []corev1.Pod {
	t.Helper()
	tpl := podTemplate(name, ann)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		// Recreate: without a kubelet no pod ever turns Ready, and a rolling update would
		// wait for that forever; Recreate deletes the (unscheduled, so at once) old pods first.
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: tpl, Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: tpl.Labels}},
	}
	if _, err := e.cp.Clientset.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := e.cp.WaitForPods(ctx, ns, "app.kubernetes.io/instance="+name, int(replicas), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

func (e *env) statefulSet(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	tpl := podTemplate(name, nil)
	one := int32(1)
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, Template: tpl, ServiceName: name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: tpl.Labels}},
	}
	if _, err := e.cp.Clientset.AppsV1().StatefulSets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cp.WaitForPods(ctx, ns, "app.kubernetes.io/instance="+name, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (e *env) barePod(ctx context.Context, t *testing.T, ns, name string, ann map[string]string) *corev1.Pod {
	t.Helper()
	tpl := podTemplate(name, ann)
	p := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	p.Name, p.Namespace = name, ns
	got, err := e.cp.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// startWebhook starts the server; once the configuration is registered it also waits until
// the API server calls it.
func (e *env) startWebhook(ctx context.Context, t *testing.T, registered bool) {
	t.Helper()
	wh, err := harness.StartWebhookServer(e.cp.CertDir, harness.WebhookOptions{Port: e.port, Args: []string{"--shutdown-delay=0s"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wh = wh
	if !registered {
		return
	}
	if err := e.cp.WaitForWebhook(ctx, nsIn, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (e *env) stopWebhook(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := e.wh.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.wh = nil
	if err := e.cp.WaitForWebhookGone(ctx, nsIn, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func init() {
	// envtest logs through controller-runtime; without a logger it prints a stack trace instead.
	ctrllog.SetLogger(logr.Discard())
}

func TestAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real control plane")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin, err := harness.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{bin: bin}
	e.cp = harness.NewControlPlane(t, harness.Options{ControllerManager: true})
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))
	for ns, in := range map[string]bool{nsIn: true, nsOut: false, harness.WebhookNamespace: true} {
		if err := e.cp.CreateNamespace(ctx, ns, in); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if e.wh != nil {
			_ = e.wh.Stop(10 * time.Second)
		}
	})

	// 1. Before the webhook is registered.
	e.deployment(ctx, t, nsIn, "before", 2, nil)
	e.barePod(ctx, t, nsIn, "bare-before", nil)

	// 2. The webhook registered (the configuration the chart ships) and serving.
	if e.port, err = harness.FreePort(); err != nil {
		t.Fatal(err)
	}
	e.startWebhook(ctx, t, false)
	cfgs := harness.DefaultWebhookConfigs().PointAt(e.wh.URL(""), e.cp.CAData)
	if err := e.cp.Register(ctx, cfgs); err != nil {
		t.Fatal(err)
	}
	if err := e.cp.WaitForWebhook(ctx, nsIn, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.deployment(ctx, t, nsIn, "good", 2, nil)
	e.statefulSet(ctx, t, nsIn, "sts")
	e.deployment(ctx, t, nsIn, "optout", 1, map[string]string{annotations.AnnotationInject: "false"})
	e.deployment(ctx, t, nsIn, "invalid", 1, map[string]string{annotations.AnnotationPreStopSleep: "banana"})
	e.deployment(ctx, t, nsOut, "notin", 1, nil)
	edited := e.barePod(ctx, t, nsIn, "edited", nil)
	if edited.Annotations[annotations.AnnotationStatus] == "" {
		t.Fatal("the webhook did not mutate the pod edited later")
	}
	// Drift that a live pod can really take: its spec is immutable, its annotations are not.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"90s"}}}`, annotations.AnnotationShutdownBudget)
	if _, err := e.cp.Clientset.CoreV1().Pods(nsIn).Patch(ctx, "edited", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// 3. The webhook down: the configuration fails open and pods are created unpatched.
	e.stopWebhook(ctx, t)
	e.deployment(ctx, t, nsIn, "down", 1, nil)
	// A status annotation copied by hand (e.g. from `kubectl get pod -o yaml` into a manifest).
	e.barePod(ctx, t, nsIn, "copied", map[string]string{annotations.AnnotationStatus: edited.Annotations[annotations.AnnotationStatus]})
	e.startWebhook(ctx, t, true)
	t.Logf("fixtures ready after %s", time.Since(start).Round(time.Millisecond))

	t.Run("states in JSON", func(t *testing.T) {
		// Pages of 3: the 12 pods take several list calls with continue tokens.
		r := e.run(t, "-A", "-o", "json", "--chunk-size=3")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1 (some pods unprotected)\nstderr: %s", r.code, r.stderr)
		}
		rep := r.report(t)
		byName := podsByName(rep)
		want := map[string]audit.State{
			"before": audit.StateUnprotected, "bare-before": audit.StateUnprotected, "good": audit.StateProtected,
			"sts": audit.StateProtected, "optout": audit.StateOptedOut, "invalid": audit.StateInvalid,
			"notin": audit.StateNotOptedIn, "edited": audit.StateDrifted, "down": audit.StateUnprotected,
			"copied": audit.StateDrifted,
		}
		counts := map[audit.State]int{}
		for _, p := range rep.Pods {
			counts[p.State]++
			instance := p.Name
			for name := range want {
				if strings.HasPrefix(p.Name, name+"-") || p.Name == name {
					instance = name
				}
			}
			if w, ok := want[instance]; !ok || p.State != w {
				t.Errorf("pod %s/%s: %s (%s), want %s", p.Namespace, p.Name, p.State, p.Reason, want[instance])
			}
		}
		if len(rep.Pods) != 12 {
			t.Errorf("%d pods reported, want 12: %v", len(rep.Pods), byName)
		}
		for s, n := range counts {
			if rep.Summary.ByState[s] != n {
				t.Errorf("summary %s = %d, counted %d", s, rep.Summary.ByState[s], n)
			}
		}
		if rep.Summary.AllProtected || len(rep.Errors) != 0 {
			t.Errorf("summary %+v errors %v", rep.Summary, rep.Errors)
		}
		if p := byName[nsIn+"/edited"]; !strings.Contains(p.Reason, "terminationGracePeriodSeconds 45 -> 120") || p.Workload.Kind != "Pod" {
			t.Errorf("edited: %+v", p)
		}
		if p := byName[nsIn+"/copied"]; !strings.Contains(p.Reason, "preStop of pushgateway none -> sleep 30s") {
			t.Errorf("copied: %+v", p)
		}
		for _, c := range []struct {
			ns, kind, name string
			state          audit.State
			pods           int
			fix            string
		}{
			{nsIn, "Deployment", "before", audit.StateUnprotected, 2, "kubectl rollout restart deployment/before -n audit-in"},
			{nsIn, "Deployment", "down", audit.StateUnprotected, 1, "kubectl rollout restart deployment/down -n audit-in"},
			{nsIn, "Deployment", "good", audit.StateProtected, 2, ""},
			{nsIn, "StatefulSet", "sts", audit.StateProtected, 1, ""},
			{nsIn, "Deployment", "optout", audit.StateOptedOut, 1, ""},
			{nsIn, "Deployment", "invalid", audit.StateInvalid, 1, "fix the pod template's annotations (see the pods' reason), then: kubectl rollout restart deployment/invalid -n audit-in"},
			{nsOut, "Deployment", "notin", audit.StateNotOptedIn, 1, "kubectl label namespace audit-out pushgateway-lifecycle.io/injection=enabled && kubectl rollout restart deployment/notin -n audit-out"},
			{nsIn, "Pod", "bare-before", audit.StateUnprotected, 1, "kubectl get pod bare-before -n audit-in -o yaml | kubectl replace --force -f -"},
		} {
			w := workload(rep, c.ns, c.kind, c.name)
			if w == nil {
				t.Errorf("no workload %s/%s/%s in %+v", c.ns, c.kind, c.name, rep.Workloads)
				continue
			}
			if w.State != c.state || w.Pods != c.pods || w.Fix != c.fix {
				t.Errorf("workload %s/%s: state %s pods %d fix %q, want %s %d %q", c.kind, c.name, w.State, w.Pods, w.Fix, c.state, c.pods, c.fix)
			}
		}
		if w := workload(rep, nsIn, "Deployment", "invalid"); w != nil && w.Template != audit.TemplateInvalid {
			t.Errorf("invalid's template: %q", w.Template)
		}
		if w := workload(rep, nsIn, "Deployment", "before"); w != nil && w.Template != audit.TemplateMutated {
			t.Errorf("before's template: %q", w.Template)
		}
		// The data risks, read from the live workloads: two replicas, no --persistence.file.
		for _, c := range []struct{ kind, name, codes string }{
			{"Deployment", "before", "replicas,no-persistence"},
			{"StatefulSet", "sts", "no-persistence"},
			{"Deployment", "optout", ""},
		} {
			if w := workload(rep, nsIn, c.kind, c.name); w != nil {
				var codes []string
				for _, r := range w.Risks {
					codes = append(codes, r.Code)
				}
				if strings.Join(codes, ",") != c.codes {
					t.Errorf("%s/%s risks %q, want %q", c.kind, c.name, codes, c.codes)
				}
			}
		}
		if rep.Summary.DataRisks == 0 {
			t.Error("summary counts no data risks")
		}
	})

	t.Run("table", func(t *testing.T) {
		r := e.run(t, "-n", nsIn)
		if r.code != 1 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		t.Logf("table:\n%s", r.stdout)
		if !strings.HasPrefix(lines[0], "WORKLOAD ") || !strings.Contains(lines[0], "   PROTECTED   STATE ") {
			t.Errorf("header %q", lines[0])
		}
		col := strings.Index(lines[0], "STATE")
		found := 0
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "deployment/before ") {
				found++
				if !strings.HasPrefix(l[col:], "Unprotected ") || !strings.Contains(l, " 0/2 ") || !strings.HasSuffix(l, "kubectl rollout restart deployment/before -n audit-in") {
					t.Errorf("row %q", l)
				}
			}
			if strings.HasPrefix(l, "deployment/good ") {
				found++
				if !strings.HasPrefix(l[col:], "Protected ") || !strings.Contains(l, " 2/2 ") {
					t.Errorf("row %q", l)
				}
			}
		}
		if found != 2 {
			t.Errorf("rows of before and good not found")
		}
		if !strings.Contains(r.stdout, "\n11 pods in 9 workloads: 3 Protected, 1 OptedOut, 4 Unprotected, 2 Drifted, 1 Invalid\n") {
			t.Error("no summary line")
		}
		if !strings.Contains(r.stdout, "\nData risks (") || !strings.Contains(r.stdout, "\n  warning: deployment/before: Deployment has replicas: 2: ") {
			t.Error("no data risks of deployment/before under the table")
		}
		if strings.Contains(r.stdout, "audit-out") {
			t.Error("-n audit-in reported another namespace")
		}

		r = e.run(t, "-A", "-o", "wide")
		t.Logf("wide:\n%s", r.stdout)
		for _, want := range []string{
			"audit-out   deployment/notin ",
			"kubectl label namespace audit-out pushgateway-lifecycle.io/injection=enabled && kubectl rollout restart deployment/notin -n audit-out\n",
			"\nNAMESPACE   POD ",
			"audit-in    edited ",
			"spec differs from what the policy decides now: terminationGracePeriodSeconds 45 -> 120\n",
			"\n12 pods in 10 workloads: 3 Protected, 1 OptedOut, 1 NotOptedIn, 4 Unprotected, 2 Drifted, 1 Invalid\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("-A -o wide lacks %q", want)
			}
		}
	})

	t.Run("the fix protects", func(t *testing.T) {
		if _, _, err := e.cp.Kubectl(ctx, nil, "rollout", "restart", "deployment/before", "-n", nsIn); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			r := e.run(t, "-n", nsIn, "-o", "json")
			w := workload(r.report(t), nsIn, "Deployment", "before")
			if w != nil && w.State == audit.StateProtected && w.Pods == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployment/before after the restart: %+v", w)
			}
			time.Sleep(time.Second)
		}
	})

	t.Run("from release", func(t *testing.T) {
		// The chart's ConfigMap with a larger shutdown budget: every admitted pod is now short of it.
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pushgateway-lifecycle-policy", Namespace: harness.WebhookNamespace},
			Data: map[string]string{"policy.yaml": "defaults:\n  shutdownBudget: 60s\n"}}
		if _, err := e.cp.Clientset.CoreV1().ConfigMaps(harness.WebhookNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, "-n", nsIn, "-o", "json", "--from-release", "pushgateway-lifecycle")
		rep := r.report(t)
		if rep.Scope.Policy != "configmap:pushgateway-lifecycle-system/pushgateway-lifecycle-policy" {
			t.Errorf("policy source %q", rep.Scope.Policy)
		}
		if w := workload(rep, nsIn, "Deployment", "good"); w == nil || w.State != audit.StateDrifted {
			t.Errorf("good under a raised budget: %+v", w)
		}
		r = e.run(t, "-n", nsIn, "--from-release", "other")
		if r.code != 2 || !strings.Contains(r.stderr, "ConfigMap pushgateway-lifecycle-system/other-pushgateway-lifecycle-policy not found") {
			t.Errorf("missing release: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("kubeconfig as kubectl finds it", func(t *testing.T) {
		// $KUBECONFIG, no flag.
		if r := e.runEnv(t, e.cp.KubeconfigPath, "-n", nsIn); r.code != 1 || !strings.Contains(r.stdout, "deployment/good ") {
			t.Errorf("KUBECONFIG: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// Two contexts: the current one points at nothing; --context picks the live one, and
		// its namespace is the default of -n.
		cfg, err := clientcmd.LoadFromFile(e.cp.KubeconfigPath)
		if err != nil {
			t.Fatal(err)
		}
		live := cfg.Contexts[cfg.CurrentContext].DeepCopy()
		live.Namespace = nsOut
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		dead := cfg.Clusters[live.Cluster].DeepCopy()
		dead.Server = fmt.Sprintf("https://127.0.0.1:%d", port)
		cfg.Clusters["dead"] = dead
		cfg.Contexts["live"] = live
		cfg.Contexts["dead"] = &clientcmdapi.Context{Cluster: "dead", AuthInfo: live.AuthInfo}
		cfg.CurrentContext = "dead"
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			t.Fatal(err)
		}
		if r := e.runEnv(t, path); r.code != 2 || !strings.Contains(r.stderr, "cannot reach the API server") {
			t.Errorf("current context dead: exit %d %s", r.code, r.stderr)
		}
		r := e.runEnv(t, path, "--context=live")
		if r.code != 1 || !strings.HasPrefix(r.stdout, "WORKLOAD ") || !strings.Contains(r.stdout, "deployment/notin ") || strings.Contains(r.stdout, "deployment/good") {
			t.Errorf("--context live (namespace audit-out): exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("namespace does not exist", func(t *testing.T) {
		r := e.run(t, "-n", "nope")
		if r.code != 2 || !strings.Contains(r.stderr, `namespace "nope" not found`) || r.stdout != "" {
			t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("no list rights", func(t *testing.T) {
		kc := e.impersonating(t, "auditor")
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "auditor", Namespace: nsIn}}
		if _, err := e.cp.Clientset.CoreV1().ServiceAccounts(nsIn).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, "--kubeconfig="+kc, "-A")
		if r.code != 2 || !strings.Contains(r.stderr, "missing permission: list namespaces cluster-wide") ||
			!strings.Contains(r.stderr, "missing permission: list pods cluster-wide") {
			t.Errorf("no rights: exit %d\nstderr %s", r.code, r.stderr)
		}
		// Pods of one namespace only, nothing else: the pods are still audited, the owners
		// inferred, and each missing right named.
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pods", Namespace: nsIn},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}}
		if _, err := e.cp.Clientset.RbacV1().Roles(nsIn).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pods", Namespace: nsIn},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pods"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "auditor", Namespace: nsIn}}}
		if _, err := e.cp.Clientset.RbacV1().RoleBindings(nsIn).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var rep *audit.Report
		waitFor(t, func() bool {
			r = e.run(t, "--kubeconfig="+kc, "-n", nsIn, "-o", "json")
			rep = r.report(t)
			return len(rep.Pods) > 0
		})
		if r.code != 2 || len(rep.Pods) != 11 {
			t.Errorf("exit %d, %d pods\nstderr %s", r.code, len(rep.Pods), r.stderr)
		}
		var msgs []string
		for _, e := range rep.Errors {
			msgs = append(msgs, e.Verb+" "+e.Resource)
		}
		got := strings.Join(msgs, ",")
		for _, w := range []string{"get namespaces", "get replicasets.apps", "get statefulsets.apps"} {
			if !strings.Contains(got, w) {
				t.Errorf("errors %q lack %q", got, w)
			}
		}
		if w := workload(rep, nsIn, "Deployment", "down"); w == nil || w.Fix != "kubectl rollout restart deployment/down -n audit-in" {
			t.Errorf("deployment inferred from the ReplicaSet's name: %+v", w)
		}
		if !strings.Contains(r.stderr, "missing permission: get replicasets.apps in namespace audit-in") {
			t.Errorf("stderr %s", r.stderr)
		}

		// -A with namespaces listable but pods only in audit-in: no cluster-wide pod list,
		// so one list per namespace; audit-in is reported, every other namespace named.
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "list-namespaces"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "get"}}}}
		if _, err := e.cp.Clientset.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-namespaces"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "list-namespaces"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "auditor", Namespace: nsIn}}}
		if _, err := e.cp.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			r = e.run(t, "--kubeconfig="+kc, "-A", "-o", "json")
			rep = r.report(t)
			return len(rep.Pods) > 0
		})
		if r.code != 2 || len(rep.Pods) != 11 || !strings.Contains(r.stderr, "missing permission: list pods in namespace audit-out") ||
			strings.Contains(r.stderr, "list pods cluster-wide") {
			t.Errorf("-A per namespace: exit %d, %d pods\nstderr %s", r.code, len(rep.Pods), r.stderr)
		}
		for _, p := range rep.Pods {
			if p.Namespace != nsIn {
				t.Errorf("pod %s/%s reported without the right to list it", p.Namespace, p.Name)
			}
		}
	})

	t.Run("the chart's ClusterRole is enough", func(t *testing.T) {
		out, err := harness.RenderChart("", map[string]any{"audit": map[string]any{"rbac": map[string]any{
			"create": true, "subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "chart-auditor", "namespace": nsIn}}}}})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := harness.SplitObjects(out)
		if err != nil {
			t.Fatal(err)
		}
		var applied []string
		for _, o := range objs {
			if !strings.HasSuffix(o.GetName(), "-audit") {
				continue
			}
			b, _ := json.Marshal(o.Object)
			if _, _, err := e.cp.Kubectl(ctx, bytes.NewReader(b), "apply", "-f", "-"); err != nil {
				t.Fatal(err)
			}
			applied = append(applied, o.GetKind())
		}
		sort.Strings(applied)
		if strings.Join(applied, ",") != "ClusterRole,ClusterRoleBinding,Role,RoleBinding" {
			t.Errorf("rendered %v", applied)
		}
		kc := e.impersonating(t, "chart-auditor")
		var r result
		waitFor(t, func() bool {
			r = e.run(t, "--kubeconfig="+kc, "-A", "-o", "json", "--from-release", "pushgateway-lifecycle")
			return r.code == 1
		})
		rep := r.report(t)
		if len(rep.Errors) != 0 || len(rep.Pods) != 12 {
			t.Errorf("with the chart's role: %d pods, errors %v", len(rep.Pods), rep.Errors)
		}
	})

	t.Run("unreachable API server", func(t *testing.T) {
		// Refused: nothing listens on the port.
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		r := e.run(t, "--kubeconfig="+e.kubeconfigAt(t, fmt.Sprintf("https://127.0.0.1:%d", port)), "-A")
		if r.code != 2 || !strings.Contains(r.stderr, "cannot reach the API server") || r.elapsed > 10*time.Second {
			t.Errorf("refused: exit %d after %s: %s", r.code, r.elapsed, r.stderr)
		}
		// Silent: the TCP connection is accepted and never answered.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		r = e.run(t, "--kubeconfig="+e.kubeconfigAt(t, "https://"+l.Addr().String()), "-A", "--request-timeout=2s")
		if r.code != 2 || !strings.Contains(r.stderr, "cannot reach the API server") || r.elapsed > 15*time.Second {
			t.Errorf("silent: exit %d after %s: %s", r.code, r.elapsed, r.stderr)
		}
	})
	t.Logf("audit suite: %s", time.Since(start).Round(time.Second))
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	// RBAC changes reach the authorizer through an informer, a moment after the write.
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// impersonating writes a kubeconfig that acts as the ServiceAccount name of nsIn (the admin
// may impersonate anyone), as `kubectl --as` does.
func (e *env) impersonating(t *testing.T, name string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(e.cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.AuthInfos {
		u.Impersonate = "system:serviceaccount:" + nsIn + ":" + name
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubeconfigAt is the admin kubeconfig pointed at another server.
func (e *env) kubeconfigAt(t *testing.T, server string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(e.cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
