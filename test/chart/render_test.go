// Package chart tests the Helm chart and the kustomize manifests: lint, render every ci values
// file, compare with the webhook configuration the e2e suite proves, assert the RBAC and the
// pod hardening, and (apiserver_test.go) have a real kube-apiserver accept every manifest.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

const namespace = harness.WebhookNamespace

type rendered []*unstructured.Unstructured

// noCheck are values without the startup check.
var noCheck = map[string]any{"startupCheck": map[string]any{"enabled": false}}

func render(t *testing.T, values map[string]any, files ...string) rendered {
	t.Helper()
	out, err := harness.RenderChart(namespace, values, files...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := harness.SplitObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func (r rendered) all(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// withoutCheck drops the startup check's objects (named <fullname>-startup-check*: its
// ServiceAccount, Role, RoleBinding, dry-run policy, hook Job and test pod), for the tests of
// what the webhook's own pods are given; startupcheck_test.go tests those objects.
func (r rendered) withoutCheck() rendered {
	var out rendered
	for _, o := range r {
		if !strings.HasPrefix(o.GetName(), checkName) {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) kinds() []string {
	var k []string
	for _, o := range r {
		k = append(k, o.GetKind())
	}
	sort.Strings(k)
	return k
}

// one decodes the only object of kind into out.
func (r rendered) one(t *testing.T, kind string, out any) {
	t.Helper()
	objs := r.all(kind)
	if len(objs) != 1 {
		t.Fatalf("%d objects of kind %s, want 1 (kinds: %v)", len(objs), kind, r.kinds())
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[0].Object, out, true); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

// named decodes the only object of kind whose name ends in suffix into out.
func (r rendered) named(t *testing.T, kind, suffix string, out any) {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, o := range r.all(kind) {
		if strings.HasSuffix(o.GetName(), suffix) {
			objs = append(objs, o)
		}
	}
	if len(objs) != 1 {
		t.Fatalf("%d objects of kind %s named *%s, want 1 (kinds: %v)", len(objs), kind, suffix, r.kinds())
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[0].Object, out, true); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

func ciFiles(t *testing.T) map[string]string {
	t.Helper()
	dir, err := harness.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "ci", "*-values.yaml"))
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	for _, want := range []string{"default", "cert-manager", "cluster-scope", "custom-policy", "monitoring", "network-policy"} {
		if out[want] == "" {
			t.Errorf("ci/%s-values.yaml missing", want)
		}
	}
	return out
}

func TestHelmLintStrict(t *testing.T) {
	helm, err := harness.HelmPath()
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := harness.ChartDir()
	args := [][]string{{}}
	for _, f := range ciFiles(t) {
		args = append(args, []string{"--values", f})
	}
	for _, a := range args {
		cmd := exec.Command(helm, append([]string{"lint", "--strict", dir}, a...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s", a, err, out)
		}
	}
}

// Each ci values file renders, and renders what it is for.
func TestCIValuesRender(t *testing.T) {
	base := []string{"ConfigMap", "Deployment", "MutatingWebhookConfiguration", "PodDisruptionBudget", "Service", "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration"}
	// The handoff gate (on by default): its RBAC, its Lease's Role and the policy narrowing its
	// pod patches.
	handoff := []string{"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
	base = append(base, handoff...)
	// The startup check (on by default): its ServiceAccount, Role and binding, its dry-run-only
	// policy and binding, the hook Job and the `helm test` pod.
	base = append(base, "ServiceAccount", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Job", "Pod")
	rotation := []string{"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret"}
	want := map[string][]string{
		"default":        append(slices.Clone(base), rotation...),
		"cert-manager":   append(slices.Clone(base), "Certificate", "Certificate", "Issuer", "Issuer"),
		"cluster-scope":  append(slices.Clone(base), rotation...),
		"custom-policy":  append(slices.Clone(base), rotation...),
		"monitoring":     append(slices.Clone(base), append(rotation, "ServiceMonitor", "PrometheusRule", "ConfigMap")...),
		"network-policy": append(slices.Clone(base), append(rotation, "NetworkPolicy")...),
	}
	for name, file := range ciFiles(t) {
		t.Run(name, func(t *testing.T) {
			r := render(t, nil, file)
			w := want[name]
			sort.Strings(w)
			if w != nil && !slices.Equal(r.kinds(), w) {
				t.Errorf("kinds %v, want %v", r.kinds(), w)
			}
		})
	}
	t.Run("cluster-scope selects every namespace but the excluded ones", func(t *testing.T) {
		r := render(t, nil, ciFiles(t)["cluster-scope"])
		var m admissionv1.MutatingWebhookConfiguration
		r.one(t, "MutatingWebhookConfiguration", &m)
		sel := m.Webhooks[0].NamespaceSelector
		if len(sel.MatchLabels) != 0 || len(sel.MatchExpressions) != 1 ||
			!slices.Equal(sel.MatchExpressions[0].Values, []string{"kube-system", namespace, "monitoring-legacy", "sandbox"}) {
			t.Errorf("namespaceSelector %+v", sel)
		}
	})
	t.Run("monitoring ships the dashboard file verbatim, for the Grafana sidecar", func(t *testing.T) {
		dir, _ := harness.ChartDir()
		want, err := os.ReadFile(filepath.Join(dir, "dashboards", "pushgateway-lifecycle.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cm corev1.ConfigMap
		render(t, nil, ciFiles(t)["monitoring"]).named(t, "ConfigMap", "-dashboard", &cm)
		if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Monitoring" {
			t.Errorf("labels %v, annotations %v: want grafana_dashboard=1 and the folder annotation", cm.Labels, cm.Annotations)
		}
		if got := cm.Data["pushgateway-lifecycle.json"]; got != strings.TrimRight(string(want), "\n") {
			t.Errorf("the ConfigMap's dashboard differs from dashboards/pushgateway-lifecycle.json (%d vs %d bytes)", len(got), len(want))
		}
		for _, o := range render(t, nil).all("ConfigMap") {
			if strings.HasSuffix(o.GetName(), "-dashboard") {
				t.Errorf("the default render ships %s: the dashboard is off by default", o.GetName())
			}
		}
	})
	t.Run("custom-policy renders the policy file and its pod selection", func(t *testing.T) {
		r := render(t, nil, ciFiles(t)["custom-policy"])
		var cm corev1.ConfigMap
		r.one(t, "ConfigMap", &cm)
		for _, s := range []string{"onInvalid: reject", "preStopSleep: 45s", "my-pushgateway", "existingPreStop: replace"} {
			if !strings.Contains(cm.Data["policy.yaml"], s) {
				t.Errorf("policy.yaml lacks %q:\n%s", s, cm.Data["policy.yaml"])
			}
		}
		var m admissionv1.MutatingWebhookConfiguration
		r.one(t, "MutatingWebhookConfiguration", &m)
		if !strings.Contains(m.Webhooks[0].MatchConditions[0].Expression, "['my-pushgateway']") {
			t.Errorf("matchCondition %q", m.Webhooks[0].MatchConditions[0].Expression)
		}
	})
}

// The chart's configurations are the ones the e2e suite proves: same rules, selectors, match
// conditions and policies as the harness's definition, field by field (clientConfig aside,
// which the e2e suite points at its local server).
func TestWebhookConfigEqualsHarness(t *testing.T) {
	chart, err := harness.ChartWebhookConfigs(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := harness.DefaultWebhookConfigs()
	if chart.Validating == nil {
		t.Fatal("no ValidatingWebhookConfiguration rendered")
	}
	if got := chart.Mutating.Webhooks[0].MatchConditions[0].Expression; got != harness.PodSelectionCEL {
		t.Errorf("pod selection CEL:\n got %s\nwant %s", got, harness.PodSelectionCEL)
	}
	strip := func(c harness.WebhookConfigs) harness.WebhookConfigs {
		c = c.PointAt("https://127.0.0.1:1", nil)
		c.Mutating.Labels, c.Validating.Labels = nil, nil
		// The apiserver defaults an absent objectSelector to the empty (match-all) selector.
		for i := range c.Mutating.Webhooks {
			if c.Mutating.Webhooks[i].ObjectSelector == nil {
				c.Mutating.Webhooks[i].ObjectSelector = &metav1.LabelSelector{}
			}
		}
		for i := range c.Validating.Webhooks {
			if c.Validating.Webhooks[i].ObjectSelector == nil {
				c.Validating.Webhooks[i].ObjectSelector = &metav1.LabelSelector{}
			}
		}
		return c
	}
	g, w := strip(chart), strip(want)
	if !equality.Semantic.DeepEqual(g.Mutating.Webhooks, w.Mutating.Webhooks) {
		t.Errorf("mutating webhooks differ:\nchart   %+v\nharness %+v", g.Mutating.Webhooks, w.Mutating.Webhooks)
	}
	if !equality.Semantic.DeepEqual(g.Validating.Webhooks, w.Validating.Webhooks) {
		t.Errorf("validating webhooks differ:\nchart   %+v\nharness %+v", g.Validating.Webhooks, w.Validating.Webhooks)
	}
	if chart.Mutating.Name != harness.ConfigName || chart.Validating.Name != harness.ConfigName {
		t.Errorf("names %s/%s, want %s", chart.Mutating.Name, chart.Validating.Name, harness.ConfigName)
	}
	for _, p := range []struct{ got, want string }{
		{*chart.Mutating.Webhooks[0].ClientConfig.Service.Path, harness.MutatePodPath},
		{*chart.Validating.Webhooks[0].ClientConfig.Service.Path, harness.ValidateWorkloadsPath},
	} {
		if p.got != p.want {
			t.Errorf("path %s, want %s", p.got, p.want)
		}
	}
	if len(chart.Mutating.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("the chart renders a caBundle: it would fight the rotator on every upgrade")
	}
}

// rbacGrants lists every rule of every Role and ClusterRole, one line each.
func rbacGrants(t *testing.T, r rendered) []string {
	t.Helper()
	var out []string
	for _, kind := range []string{"Role", "ClusterRole"} {
		for _, o := range r.all(kind) {
			var role rbacv1.ClusterRole // same rules field as Role
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
				t.Fatal(err)
			}
			for _, rule := range role.Rules {
				out = append(out, fmt.Sprintf("%s %s: groups=%v resources=%v names=%v verbs=%v nonResource=%v",
					kind, o.GetNamespace(), rule.APIGroups, rule.Resources, rule.ResourceNames, rule.Verbs, rule.NonResourceURLs))
			}
		}
	}
	sort.Strings(out)
	return out
}

// The full list of what the chart grants: the certificate rotator's needs and nothing else;
// with cert-manager, nothing at all and no token in the pods.
func TestRBACGrants(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		r := render(t, nil)
		want := []string{
			"ClusterRole : groups=[] resources=[namespaces] names=[] verbs=[get list watch] nonResource=[]",
			// The drain's condition; a policy narrows it to that condition.
			"ClusterRole : groups=[] resources=[pods/status] names=[] verbs=[patch] nonResource=[]",
			"ClusterRole : groups=[] resources=[pods] names=[] verbs=[get list watch patch] nonResource=[]",
			"ClusterRole : groups=[admissionregistration.k8s.io] resources=[mutatingwebhookconfigurations] names=[pushgateway-lifecycle] verbs=[get list watch update] nonResource=[]",
			"ClusterRole : groups=[admissionregistration.k8s.io] resources=[validatingwebhookconfigurations] names=[pushgateway-lifecycle] verbs=[get list watch update] nonResource=[]",
			"ClusterRole : groups=[events.k8s.io] resources=[events] names=[] verbs=[create patch] nonResource=[]",
			"Role " + namespace + ": groups=[] resources=[events] names=[] verbs=[create patch] nonResource=[]",
			// The startup check's, to its own ServiceAccount; a policy narrows it to dry-runs.
			"Role " + namespace + ": groups=[] resources=[pods] names=[] verbs=[create] nonResource=[]",
			"Role " + namespace + ": groups=[] resources=[secrets] names=[pushgateway-lifecycle-certs] verbs=[get list watch update] nonResource=[]",
			"Role " + namespace + ": groups=[coordination.k8s.io] resources=[leases] names=[] verbs=[create] nonResource=[]",
			"Role " + namespace + ": groups=[coordination.k8s.io] resources=[leases] names=[pushgateway-lifecycle-handoff] verbs=[get update] nonResource=[]",
		}
		if got := rbacGrants(t, r); !slices.Equal(got, want) {
			t.Errorf("grants:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
			for _, o := range r.all(kind) {
				var b rbacv1.ClusterRoleBinding
				_ = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b)
				sa := "pushgateway-lifecycle"
				if strings.HasPrefix(o.GetName(), checkName) {
					sa = checkName
				}
				if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != sa || b.Subjects[0].Namespace != namespace {
					t.Errorf("%s %s subjects %+v", kind, o.GetName(), b.Subjects)
				}
			}
		}
		var d appsv1.Deployment
		r.one(t, "Deployment", &d)
		if d.Spec.Template.Spec.AutomountServiceAccountToken == nil || !*d.Spec.Template.Spec.AutomountServiceAccountToken {
			t.Error("the rotator needs the ServiceAccount token mounted")
		}
		args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
		for _, a := range []string{"--cert-rotation", "--cert-secret-name=pushgateway-lifecycle-certs", "--cert-service-name=pushgateway-lifecycle",
			"--cert-namespace=" + namespace, "--mutating-webhook-name=pushgateway-lifecycle", "--validating-webhook-name=pushgateway-lifecycle",
			"--handoff", "--leader-elect", "--leader-election-id=pushgateway-lifecycle-handoff", "--drift-watch",
			`--namespace-selector={"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","` + namespace + `"]}],"matchLabels":{"pushgateway-lifecycle.io/injection":"enabled"}}`} {
			if !strings.Contains(args, a) {
				t.Errorf("args lack %s: %s", a, args)
			}
		}
	})
	t.Run("cert-manager keeps only the handoff gate's rights", func(t *testing.T) {
		r := render(t, map[string]any{"certManager": map[string]any{"enabled": true}})
		for _, g := range rbacGrants(t, r) {
			if strings.Contains(g, "secrets") || strings.Contains(g, "webhookconfigurations") {
				t.Errorf("rotation right with cert-manager: %s", g)
			}
		}
		if n := len(rbacGrants(t, r.withoutCheck())); n != 7 {
			t.Errorf("%d grants, want the handoff gate's 5, the drain's pods/status and the drift watch's namespaces", n)
		}
		var d appsv1.Deployment
		r.one(t, "Deployment", &d)
		if tok := d.Spec.Template.Spec.AutomountServiceAccountToken; tok == nil || !*tok {
			t.Error("the handoff gate needs the ServiceAccount token mounted")
		}
	})
	t.Run("cert-manager, handoff off", func(t *testing.T) {
		r := render(t, map[string]any{"certManager": map[string]any{"enabled": true}, "handoff": map[string]any{"enabled": false}}).withoutCheck()
		for _, kind := range []string{"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "Secret"} {
			if n := len(r.all(kind)); n != 0 {
				t.Errorf("%d %s rendered with cert-manager", n, kind)
			}
		}
		var d appsv1.Deployment
		r.one(t, "Deployment", &d)
		if tok := d.Spec.Template.Spec.AutomountServiceAccountToken; tok == nil || *tok {
			t.Error("pods mount a ServiceAccount token although nothing needs one")
		}
		var sa corev1.ServiceAccount
		r.one(t, "ServiceAccount", &sa)
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Error("ServiceAccount does not disable token automount")
		}
		if strings.Contains(strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "), "--cert-rotation") {
			t.Error("rotation enabled with cert-manager")
		}
		var m admissionv1.MutatingWebhookConfiguration
		r.one(t, "MutatingWebhookConfiguration", &m)
		if got := m.Annotations["cert-manager.io/inject-ca-from"]; got != namespace+"/pushgateway-lifecycle-serving" {
			t.Errorf("inject-ca-from %q", got)
		}
	})
}

// An upgrade (a second render) must not change CA material in the default mode: the chart
// renders none (the rotator owns it), so nothing can differ. With genCA it would differ every time.
func TestNoCAMaterialAcrossRenders(t *testing.T) {
	a, err := harness.RenderChart(namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := harness.RenderChart(namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two renders of the same values differ")
	}
	for _, marker := range []string{"BEGIN CERTIFICATE", "PRIVATE KEY", "caBundle", "tls.crt:", "ca.crt:"} {
		if bytes.Contains(a, []byte(marker)) {
			t.Errorf("rendered manifests contain %q: key material would be rewritten by helm upgrade", marker)
		}
	}
	objs, _ := harness.SplitObjects(a)
	for _, o := range rendered(objs).all("Secret") {
		if _, ok := o.Object["data"]; ok {
			t.Errorf("Secret %s renders data", o.GetName())
		}
		if _, ok := o.Object["stringData"]; ok {
			t.Errorf("Secret %s renders stringData", o.GetName())
		}
	}
}

func TestDeploymentHardeningAndHA(t *testing.T) {
	r := render(t, nil)
	var d appsv1.Deployment
	r.one(t, "Deployment", &d)
	ps := d.Spec.Template.Spec
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d", *d.Spec.Replicas)
	}
	if sc := ps.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", ps.SecurityContext)
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext %+v", sc)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("CPU limit set: throttling turns into apiserver timeouts")
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Error("no resource requests")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness %+v", c.ReadinessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Errorf("preStop %+v", c.Lifecycle)
	} else if c.Lifecycle.PreStop.Sleep.Seconds >= *ps.TerminationGracePeriodSeconds {
		t.Errorf("preStop sleep %d >= grace %d", c.Lifecycle.PreStop.Sleep.Seconds, *ps.TerminationGracePeriodSeconds)
	}
	if a := ps.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
		t.Errorf("anti-affinity %+v", ps.Affinity)
	}
	if len(ps.TopologySpreadConstraints) != 1 || ps.TopologySpreadConstraints[0].TopologyKey != corev1.LabelTopologyZone {
		t.Errorf("topology spread %+v", ps.TopologySpreadConstraints)
	}
	var pdb struct {
		Spec struct {
			MinAvailable any `json:"minAvailable"`
		} `json:"spec"`
	}
	objs := r.all("PodDisruptionBudget")
	if len(objs) != 1 {
		t.Fatal("no PodDisruptionBudget")
	}
	_ = runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, &pdb)
	if fmt.Sprint(pdb.Spec.MinAvailable) != "1" {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}
	// The policy is mounted as a directory: a subPath mount would never see updates.
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("volume %s mounted with subPath: no hot reload", m.Name)
		}
	}
	if _, ok := d.Spec.Template.Annotations["checksum/policy"]; ok {
		t.Error("policy checksum annotation restarts pods on policy change")
	}
	if len(render(t, map[string]any{"replicaCount": 1}).all("PodDisruptionBudget")) != 0 {
		t.Error("a PDB with minAvailable 1 on one replica would block every node drain")
	}
}

// Wrong types and unknown keys fail at install time, not in the cluster.
func TestSchemaRejectsBadValues(t *testing.T) {
	cases := map[string]map[string]any{
		"replicaCount as string":  {"replicaCount": "two"},
		"unknown failurePolicy":   {"webhook": map[string]any{"failurePolicy": "Fial"}},
		"timeout out of range":    {"webhook": map[string]any{"timeoutSeconds": 31}},
		"unknown scope":           {"webhook": map[string]any{"scope": "everything"}},
		"misspelled key":          {"webhok": map[string]any{}},
		"bad TLS version":         {"webhook": map[string]any{"tlsMinVersion": "1.1"}},
		"policy typo":             {"policy": map[string]any{"onInvalid": "ignore"}},
		"policy unknown field":    {"policy": map[string]any{"defaults": map[string]any{"preStopSleeep": "30s"}}},
		"bad shutdownDelay":       {"shutdownDelay": "soon"},
		"monitor without metrics": {"metricsPort": 0, "serviceMonitor": map[string]any{"enabled": true}},
		"grace too short":         {"preStopSleepSeconds": 30, "terminationGracePeriodSeconds": 30},
	}
	for name, v := range cases {
		if _, err := harness.RenderChart(namespace, v); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

func kubectl(t *testing.T) string {
	t.Helper()
	dir, err := harness.K8sBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "kubectl")
}

func kustomize(t *testing.T, dir string) rendered {
	t.Helper()
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl(t), "kustomize", filepath.Join(root, dir))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	objs, err := harness.SplitObjects(stdout.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// config/default is equivalent to the chart's defaults on what matters: the webhooks (rules,
// selectors, conditions, policies, paths), the pod's security and HA settings and flags (names
// aside), and the RBAC (names aside).
//
// The startup check is the chart's alone: it is a Helm hook (post-install, post-upgrade, helm
// test), which kustomize has no equivalent of.
func TestKustomizeEquivalentToChart(t *testing.T) {
	k := kustomize(t, "config/default")
	c := render(t, noCheck)

	var km, cm admissionv1.MutatingWebhookConfiguration
	k.one(t, "MutatingWebhookConfiguration", &km)
	c.one(t, "MutatingWebhookConfiguration", &cm)
	var kv, cv admissionv1.ValidatingWebhookConfiguration
	k.one(t, "ValidatingWebhookConfiguration", &kv)
	c.one(t, "ValidatingWebhookConfiguration", &cv)
	var ks corev1.Service
	k.one(t, "Service", &ks)
	ccs := []*admissionv1.WebhookClientConfig{&km.Webhooks[0].ClientConfig}
	for i := range kv.Webhooks {
		ccs = append(ccs, &kv.Webhooks[i].ClientConfig)
	}
	for _, cc := range ccs {
		if cc.Service.Name != ks.Name || cc.Service.Namespace != namespace {
			t.Errorf("kustomize webhook calls service %s/%s, want %s/%s", cc.Service.Namespace, cc.Service.Name, namespace, ks.Name)
		}
		cc.Service.Name = "pushgateway-lifecycle"
	}
	if !equality.Semantic.DeepEqual(km.Webhooks, cm.Webhooks) {
		t.Errorf("mutating webhooks differ:\nkustomize %+v\nchart     %+v", km.Webhooks, cm.Webhooks)
	}
	if !equality.Semantic.DeepEqual(kv.Webhooks, cv.Webhooks) {
		t.Errorf("validating webhooks differ:\nkustomize %+v\nchart     %+v", kv.Webhooks, cv.Webhooks)
	}

	var kd, cd appsv1.Deployment
	k.one(t, "Deployment", &kd)
	c.one(t, "Deployment", &cd)
	kp, cp := kd.Spec.Template.Spec, cd.Spec.Template.Spec
	if !reflect.DeepEqual(kp.SecurityContext, cp.SecurityContext) {
		t.Errorf("pod securityContext differs: %+v vs %+v", kp.SecurityContext, cp.SecurityContext)
	}
	kc, cc := kp.Containers[0], cp.Containers[0]
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"container securityContext", kc.SecurityContext, cc.SecurityContext},
		{"resources", kc.Resources, cc.Resources},
		{"readinessProbe", kc.ReadinessProbe, cc.ReadinessProbe},
		{"livenessProbe", kc.LivenessProbe, cc.LivenessProbe},
		{"lifecycle", kc.Lifecycle, cc.Lifecycle},
		{"ports", kc.Ports, cc.Ports},
		{"volumeMounts", kc.VolumeMounts, cc.VolumeMounts},
		{"replicas", kd.Spec.Replicas, cd.Spec.Replicas},
		{"strategy", kd.Spec.Strategy, cd.Spec.Strategy},
		{"grace", kp.TerminationGracePeriodSeconds, cp.TerminationGracePeriodSeconds},
		{"token", kp.AutomountServiceAccountToken, cp.AutomountServiceAccountToken},
		{"affinity", kp.Affinity, cp.Affinity},
		{"topologySpread", kp.TopologySpreadConstraints, cp.TopologySpreadConstraints},
	} {
		if !equality.Semantic.DeepEqual(f.a, f.b) {
			t.Errorf("%s differs:\nkustomize %+v\nchart     %+v", f.name, f.a, f.b)
		}
	}
	// Flags: the same, once each side's resource names are replaced by placeholders.
	names := func(args []string, secret, svc, cfg string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			flag, value, _ := strings.Cut(a, "=")
			switch {
			case strings.HasPrefix(flag, "--cert-secret-name") && value == secret:
				value = "SECRET"
			case strings.HasPrefix(flag, "--cert-service-name") && value == svc:
				value = "SERVICE"
			case strings.HasSuffix(flag, "-webhook-name") && value == cfg:
				value = "CONFIG"
			}
			out[i] = flag + "=" + value
		}
		return out
	}
	var ksec corev1.Secret
	k.one(t, "Secret", &ksec)
	ka := names(kc.Args, ksec.Name, ks.Name, km.Name)
	ca := names(cc.Args, "pushgateway-lifecycle-certs", "pushgateway-lifecycle", "pushgateway-lifecycle")
	if !slices.Equal(ka, ca) {
		t.Errorf("args differ:\nkustomize %v\nchart     %v", ka, ca)
	}
	// RBAC: the same rules once names are normalised, and they name kustomize's own objects.
	norm := func(lines []string, secret, cfg string) []string {
		r := strings.NewReplacer("["+secret+"]", "[SECRET]", "["+cfg+"]", "[CONFIG]")
		for i := range lines {
			lines[i] = r.Replace(lines[i])
		}
		return lines
	}
	kg := norm(rbacGrants(t, k), ksec.Name, km.Name)
	cg := norm(rbacGrants(t, c), "pushgateway-lifecycle-certs", "pushgateway-lifecycle")
	if !slices.Equal(kg, cg) {
		t.Errorf("RBAC differs:\nkustomize %s\nchart     %s", strings.Join(kg, "\n"), strings.Join(cg, "\n"))
	}

	t.Run("certmanager overlay", func(t *testing.T) {
		k := kustomize(t, "config/certmanager")
		ch := render(t, map[string]any{"certManager": map[string]any{"enabled": true}, "startupCheck": noCheck["startupCheck"]})
		if n := len(k.all("Secret")); n != 0 {
			t.Errorf("%d Secret with cert-manager", n)
		}
		// Only the handoff gate's rights remain, as in the chart.
		if kg, cg := rbacGrants(t, k), rbacGrants(t, ch); !slices.Equal(kg, cg) {
			t.Errorf("RBAC with cert-manager differs:\nkustomize %s\nchart     %s", strings.Join(kg, "\n"), strings.Join(cg, "\n"))
		}
		var kd, cd appsv1.Deployment
		k.one(t, "Deployment", &kd)
		ch.one(t, "Deployment", &cd)
		if !slices.Equal(kd.Spec.Template.Spec.Containers[0].Args, cd.Spec.Template.Spec.Containers[0].Args) {
			t.Errorf("args differ: %v vs %v", kd.Spec.Template.Spec.Containers[0].Args, cd.Spec.Template.Spec.Containers[0].Args)
		}
		if !equality.Semantic.DeepEqual(kd.Spec.Template.Spec.AutomountServiceAccountToken, cd.Spec.Template.Spec.AutomountServiceAccountToken) {
			t.Error("token automount differs")
		}
		var km admissionv1.MutatingWebhookConfiguration
		k.one(t, "MutatingWebhookConfiguration", &km)
		certs := k.all("Certificate")
		found := false
		for _, c := range certs {
			if km.Annotations["cert-manager.io/inject-ca-from"] == c.GetNamespace()+"/"+c.GetName() {
				found = true
				secret, _, _ := unstructured.NestedString(c.Object, "spec", "secretName")
				if secret != kd.Spec.Template.Spec.Volumes[0].Secret.SecretName {
					t.Errorf("Certificate writes %s, pods mount %s", secret, kd.Spec.Template.Spec.Volumes[0].Secret.SecretName)
				}
			}
		}
		if !found {
			t.Errorf("inject-ca-from %q names no Certificate", km.Annotations["cert-manager.io/inject-ca-from"])
		}
	})
}
