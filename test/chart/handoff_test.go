package chart

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

const handoffPolicySuffix = "-handoff-pod-updates"

// The handoff gate is on by default; off, nothing of it is rendered; restrictPodUpdates off
// keeps its RBAC and drops the narrowing policy.
func TestHandoffRender(t *testing.T) {
	hasHandoff := func(r rendered) (args, rbac, vap bool) {
		var d appsv1.Deployment
		r.one(t, "Deployment", &d)
		args = slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--handoff")
		for _, g := range rbacGrants(t, r) {
			rbac = rbac || strings.Contains(g, "resources=[pods]")
		}
		for _, o := range r.all("ValidatingAdmissionPolicy") {
			vap = vap || strings.HasSuffix(o.GetName(), handoffPolicySuffix)
		}
		return args, rbac, vap
	}
	for _, c := range []struct {
		name            string
		values          map[string]any
		args, rbac, vap bool
	}{
		{"default", nil, true, true, true},
		{"off", map[string]any{"handoff": map[string]any{"enabled": false}}, false, false, false},
		{"unrestricted", map[string]any{"handoff": map[string]any{"restrictPodUpdates": false}}, true, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			args, rbac, vap := hasHandoff(render(t, c.values).withoutCheck())
			if args != c.args || rbac != c.rbac || vap != c.vap {
				t.Errorf("--handoff %v, pods RBAC %v, restricting policy %v; want %v %v %v", args, rbac, vap, c.args, c.rbac, c.vap)
			}
		})
	}
	t.Run("the policy is bound, denies, fails closed and names the chart's ServiceAccount", func(t *testing.T) {
		r := render(t, nil)
		var p admissionv1.ValidatingAdmissionPolicy
		r.named(t, "ValidatingAdmissionPolicy", handoffPolicySuffix, &p)
		var b admissionv1.ValidatingAdmissionPolicyBinding
		r.named(t, "ValidatingAdmissionPolicyBinding", handoffPolicySuffix, &b)
		if b.Spec.PolicyName != p.Name || !slices.Equal(b.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
			t.Errorf("binding %+v for policy %s", b.Spec, p.Name)
		}
		if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionv1.Fail {
			t.Errorf("failurePolicy %v, want Fail", p.Spec.FailurePolicy)
		}
		if len(p.Spec.MatchConditions) != 1 || !strings.Contains(p.Spec.MatchConditions[0].Expression, "'"+namespace+"' + ':' + 'pushgateway-lifecycle'") {
			t.Errorf("matchConditions %+v do not name the ServiceAccount %s/pushgateway-lifecycle", p.Spec.MatchConditions, namespace)
		}
	})
}

// config/default carries the same policy, naming kustomize's own ServiceAccount.
func TestHandoffKustomize(t *testing.T) {
	k, c := kustomize(t, "config/default"), render(t, nil)
	var kp, cp admissionv1.ValidatingAdmissionPolicy
	k.named(t, "ValidatingAdmissionPolicy", handoffPolicySuffix, &kp)
	c.named(t, "ValidatingAdmissionPolicy", handoffPolicySuffix, &cp)
	var sa corev1.ServiceAccount
	k.one(t, "ServiceAccount", &sa)
	want := "'" + sa.Namespace + "' + ':' + '" + sa.Name + "'"
	if len(kp.Spec.MatchConditions) != 1 || !strings.Contains(kp.Spec.MatchConditions[0].Expression, want) {
		t.Fatalf("kustomize matchConditions %+v do not name %s", kp.Spec.MatchConditions, want)
	}
	kp.Spec.MatchConditions, cp.Spec.MatchConditions = nil, nil
	kj, _ := json.Marshal(kp.Spec)
	cj, _ := json.Marshal(cp.Spec)
	if string(kj) != string(cj) {
		t.Errorf("handoff policies differ:\nkustomize %s\nchart     %s", kj, cj)
	}
	var kb admissionv1.ValidatingAdmissionPolicyBinding
	k.named(t, "ValidatingAdmissionPolicyBinding", handoffPolicySuffix, &kb)
	if kb.Spec.PolicyName != kp.Name {
		t.Errorf("kustomize binding names policy %q, want %q", kb.Spec.PolicyName, kp.Name)
	}
}

// The chart's handoff RBAC and policy on a real kube-apiserver, exercised as the chart's
// ServiceAccount (impersonated): removing the handoff gate is the only pod change it can make.
func TestHandoffPodUpdatePolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const appNS = "handoff-apps"
	for _, ns := range []string{namespace, appNS} {
		if err := cp.CreateNamespace(ctx, ns, false); err != nil {
			t.Fatal(err)
		}
		if _, err := cp.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// The chart's handoff objects and its ServiceAccount, nothing else.
	applyRendered(ctx, t, cp, 5, "ServiceAccount, ClusterRole(Binding), policy and binding", func(kind, name string) bool {
		return kind == "ServiceAccount" || strings.HasSuffix(name, "-handoff") || strings.HasSuffix(name, handoffPolicySuffix)
	})
	asProduct := asChartServiceAccount(cp)

	seq := 0
	gatedPod := func(t *testing.T) string {
		t.Helper()
		seq++
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "gated-" + string(rune('a'+seq)), Namespace: appNS, Labels: map[string]string{"app": "pgw"}},
			Spec: corev1.PodSpec{
				SchedulingGates: []corev1.PodSchedulingGate{{Name: "example.com/quota"}, {Name: annotations.SchedulingGateHandoff}},
				Containers:      []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}},
			},
		}
		if _, err := cp.Clientset.CoreV1().Pods(appNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return p.Name
	}
	patch := func(name string, ops ...map[string]any) error {
		b, _ := json.Marshal(ops)
		_, err := asProduct.CoreV1().Pods(appNS).Patch(ctx, name, types.JSONPatchType, b, metav1.PatchOptions{})
		return err
	}
	removeGate := []map[string]any{
		{"op": "test", "path": "/spec/schedulingGates/1", "value": map[string]string{"name": annotations.SchedulingGateHandoff}},
		{"op": "remove", "path": "/spec/schedulingGates/1"},
	}
	relabel := map[string]any{"op": "replace", "path": "/metadata/labels/app", "value": "other"}

	// The policy takes effect once the API server has loaded it: wait for the first denial.
	probe := gatedPod(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := patch(probe, relabel)
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			break
		}
		if err == nil {
			probe = gatedPod(t) // applied before the policy was loaded: try on a fresh pod
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy never denied a label change: last error %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	denied := func(t *testing.T, err error, msg string) {
		t.Helper()
		if err == nil {
			t.Fatal("allowed")
		}
		if !strings.Contains(err.Error(), msg) {
			t.Fatalf("denied, but not for %q: %v", msg, err)
		}
	}
	t.Run("an image change with the gate removal is denied", func(t *testing.T) {
		ops := append(slices.Clone(removeGate), map[string]any{"op": "replace", "path": "/spec/containers/0/image", "value": "evil:latest"})
		denied(t, patch(gatedPod(t), ops...), "may not change a pod's containers")
	})
	t.Run("a label change with the gate removal is denied", func(t *testing.T) {
		denied(t, patch(gatedPod(t), append(slices.Clone(removeGate), relabel)...), "may not change a pod's labels")
	})
	t.Run("removing another controller's gate is denied", func(t *testing.T) {
		denied(t, patch(gatedPod(t), map[string]any{"op": "remove", "path": "/spec/schedulingGates/0"}), "may only remove the pushgateway-lifecycle.io/handoff scheduling gate")
	})
	t.Run("an update of a pod without the handoff gate is denied", func(t *testing.T) {
		name := gatedPod(t)
		if err := patch(name, removeGate...); err != nil {
			t.Fatal(err)
		}
		denied(t, patch(name, map[string]any{"op": "add", "path": "/metadata/annotations", "value": map[string]string{"x": "y"}}), "may only remove")
	})
	t.Run("removing the handoff gate alone is allowed and keeps the other gate", func(t *testing.T) {
		name := gatedPod(t)
		if err := patch(name, removeGate...); err != nil {
			t.Fatalf("gate removal denied: %v", err)
		}
		p, err := cp.Clientset.CoreV1().Pods(appNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.SchedulingGates) != 1 || p.Spec.SchedulingGates[0].Name != "example.com/quota" {
			t.Errorf("gates after removal: %+v", p.Spec.SchedulingGates)
		}
	})
	statusPatch := func(name string, conds ...corev1.PodCondition) error {
		b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
		_, err := asProduct.CoreV1().Pods(appNS).Patch(ctx, name, types.StrategicMergePatchType, b, metav1.PatchOptions{}, "status")
		return err
	}
	accepting := corev1.PodCondition{Type: annotations.ConditionAcceptingPushes, Status: corev1.ConditionTrue, Reason: "Accepting"}
	t.Run("writing the drain's condition is allowed, and keeps the other conditions", func(t *testing.T) {
		name := gatedPod(t)
		other := corev1.PodCondition{Type: "example.com/lb", Status: corev1.ConditionTrue}
		b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{other}}})
		if _, err := cp.Clientset.CoreV1().Pods(appNS).Patch(ctx, name, types.StrategicMergePatchType, b, metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		if err := statusPatch(name, accepting); err != nil {
			t.Fatalf("condition write denied: %v", err)
		}
		draining := accepting
		draining.Status, draining.Reason = corev1.ConditionFalse, "Draining"
		if err := statusPatch(name, draining); err != nil {
			t.Fatalf("condition change denied: %v", err)
		}
		p, err := cp.Clientset.CoreV1().Pods(appNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[corev1.PodConditionType]corev1.ConditionStatus{}
		for _, c := range p.Status.Conditions {
			got[c.Type] = c.Status
		}
		if got[annotations.ConditionAcceptingPushes] != corev1.ConditionFalse || got["example.com/lb"] != corev1.ConditionTrue {
			t.Errorf("conditions after the writes: %v", got)
		}
	})
	t.Run("writing another condition of the status is denied", func(t *testing.T) {
		ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
		denied(t, statusPatch(gatedPod(t), accepting, ready), "may only write the pushgateway-lifecycle.io/accepting-pushes condition")
	})
	t.Run("others are not restricted; the ServiceAccount cannot delete pods", func(t *testing.T) {
		name := gatedPod(t)
		b, _ := json.Marshal([]map[string]any{relabel})
		if _, err := cp.Clientset.CoreV1().Pods(appNS).Patch(ctx, name, types.JSONPatchType, b, metav1.PatchOptions{}); err != nil {
			t.Errorf("an administrator's label change was denied: %v", err)
		}
		if err := asProduct.CoreV1().Pods(appNS).Delete(ctx, name, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("delete as the ServiceAccount: %v, want Forbidden by RBAC", err)
		}
	})
}

// applyRendered applies the chart's default objects that keep selects, which must be want of
// them (the startup check's objects aside).
func applyRendered(ctx context.Context, t *testing.T, cp *harness.ControlPlane, want int, what string, keep func(kind, name string) bool) {
	t.Helper()
	applyKept(ctx, t, cp, render(t, nil).withoutCheck(), want, what, keep)
}

// applyKept applies the objects that keep selects, which must be want of them.
func applyKept(ctx context.Context, t *testing.T, cp *harness.ControlPlane, objs rendered, want int, what string, keep func(kind, name string) bool) {
	t.Helper()
	var docs []string
	for _, o := range objs {
		if keep(o.GetKind(), o.GetName()) {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(y))
		}
	}
	if len(docs) != want {
		t.Fatalf("%d objects rendered, want %s", len(docs), what)
	}
	if _, stderr, err := cp.Kubectl(ctx, strings.NewReader(strings.Join(docs, "---\n")), "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
}

// asChartServiceAccount is a client that impersonates the chart's ServiceAccount.
func asChartServiceAccount(cp *harness.ControlPlane) kubernetes.Interface {
	cfg := cp.RESTConfig()
	cfg.Impersonate.UserName = "system:serviceaccount:" + namespace + ":pushgateway-lifecycle"
	cfg.Impersonate.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	return kubernetes.NewForConfigOrDie(cfg)
}
