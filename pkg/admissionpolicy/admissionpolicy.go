// Package admissionpolicy generates, from a policy file, the Kubernetes-native form of the
// webhook: a MutatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in Kubernetes 1.36)
// that makes the engine's changes in the API server itself, and ValidatingAdmissionPolicies
// that warn about (onInvalid: warn) or deny (reject) invalid settings on pods and on
// workloads' pod templates, each with its binding. No Deployment, Service, certificate or
// RBAC is needed, and nothing can be unreachable.
//
// The CEL is the engine written a second time; test/admissionpolicy proves on the real API
// server that both store the same pods, and docs/admission-policy.md lists where they differ.
package admissionpolicy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// DefaultName names the policies and bindings (with -workloads for the workload validator).
const DefaultName = "pushgateway-lifecycle"

// Options shape the bindings; the policy file shapes the policies.
type Options struct {
	// Name of the policies and bindings; DefaultName when empty.
	Name string
	// ClusterScope binds every namespace (but kube-system and ExcludedNamespaces) instead of
	// the namespaces labelled pushgateway-lifecycle.io/injection=enabled.
	ClusterScope bool
	// ExcludedNamespaces are never bound, in either scope (kube-system always is excluded).
	ExcludedNamespaces []string
}

// Policies are the generated objects, in the order they should be applied.
type Policies struct {
	Mutating                  *admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBinding           *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating                *admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBinding         *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	WorkloadValidating        *admissionregistrationv1.ValidatingAdmissionPolicy
	WorkloadValidatingBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// Objects lists the generated objects in apply order.
func (p *Policies) Objects() []runtime.Object {
	return []runtime.Object{p.Mutating, p.MutatingBinding, p.Validating, p.ValidatingBinding, p.WorkloadValidating, p.WorkloadValidatingBinding}
}

// YAML writes the objects as one multi-document YAML stream.
func (p *Policies) YAML() ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range p.Objects() {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// workloadTemplate is the pod template of the kinds the workload validator checks.
var workloadTemplate = engine.ValidatedTemplateCEL("object")

// workloadResourceRules are the validated kinds (engine.Workloads), one rule per API group,
// as the chart's validating webhook registers them.
func workloadResourceRules() []admissionregistrationv1.NamedRuleWithOperations {
	var out []admissionregistrationv1.NamedRuleWithOperations
	for _, g := range engine.ValidatedGroups() {
		out = append(out, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{g.Group}, APIVersions: []string{"v1"}, Resources: g.Resources},
		}})
	}
	return out
}

// Generate builds the policies for a validated policy.
func Generate(pol *policy.Policy, opts Options) (*Policies, error) {
	if errs := pol.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("policy: %w", errs.ToAggregate())
	}
	name := opts.Name
	if name == "" {
		name = DefaultName
	}
	podSel, err := selectionCEL(pol, "object")
	if err != nil {
		return nil, err
	}
	tplSel, err := selectionCEL(pol, "("+workloadTemplate+")")
	if err != nil {
		return nil, err
	}
	cfg := configVariables(pol)
	ignore := admissionregistrationv1.Ignore
	equivalent := admissionregistrationv1.Equivalent
	forbidden := metav1.StatusReasonForbidden
	action := admissionregistrationv1.Warn
	if pol.OnInvalid == policy.OnInvalidReject {
		action = admissionregistrationv1.Deny
	}
	podRules := &admissionregistrationv1.MatchResources{
		MatchPolicy: &equivalent,
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}}},
	}
	workloadRules := &admissionregistrationv1.MatchResources{MatchPolicy: &equivalent, ResourceRules: workloadResourceRules()}
	conditions := func(root, sel string) []admissionregistrationv1.MatchCondition {
		return []admissionregistrationv1.MatchCondition{
			{Name: "selected", Expression: sel},
			// The kubelet owns a mirror pod's spec; the API server refuses changes to it.
			{Name: "not-mirror-pod", Expression: "!(" + lit(annotations.AnnotationMirror) + " in " + root + ".metadata.?annotations.orValue({}))"},
			{Name: "not-kube-system", Expression: "request.namespace != 'kube-system'"},
		}
	}
	meta := func(n string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: n, Labels: map[string]string{"app.kubernetes.io/name": "pushgateway-lifecycle", "app.kubernetes.io/component": "admission-policy"}}
	}
	bindingRes := func() *admissionregistrationv1.MatchResources {
		return &admissionregistrationv1.MatchResources{NamespaceSelector: namespaceSelector(opts)}
	}

	out := &Policies{}
	out.Mutating = &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: meta(name),
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: podRules.DeepCopy(),
			MatchConditions:  conditions("object", podSel),
			Variables:        toVariables(cfg, podVariables("object")),
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeJSONPatch,
				JSONPatch: &admissionregistrationv1.JSONPatch{Expression: mutationCEL()},
			}},
			// Fail open like the webhook: a policy that cannot be evaluated leaves the pod as
			// it was, never half patched (one JSON patch is applied whole or not at all).
			FailurePolicy: &ignore,
			// A later webhook or policy that changes the pod runs this one again; a second
			// pass over its own result changes nothing.
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	out.MutatingBinding = &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: meta(name),
		Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: name, MatchResources: bindingRes()},
	}

	var podValidations, tplValidations []admissionregistrationv1.Validation
	for _, pv := range problemVariables {
		podValidations = append(podValidations, admissionregistrationv1.Validation{
			Expression:        "variables.cfgReject || variables.optOut || variables.noTarget || size(variables." + pv + ") == 0",
			MessageExpression: "'pushgateway-lifecycle: ' + variables." + pv + "[0] + '; using the policy default'",
		})
		tplValidations = append(tplValidations, admissionregistrationv1.Validation{
			Expression:        "variables.cfgReject || size(variables." + pv + ") == 0",
			MessageExpression: "'pushgateway-lifecycle: pod template ' + variables." + pv + "[0] + '; pods will use the policy default'",
		})
	}
	aggregate := "(size(variables.problems) == 1 ? variables.problems[0] : '[' + variables.problems.join(', ') + ']')"
	podValidations = append(podValidations, admissionregistrationv1.Validation{
		Expression:        "!variables.cfgReject || variables.optOut || size(variables.problems) == 0",
		MessageExpression: "'pushgateway-lifecycle: ' + " + aggregate,
		Reason:            &forbidden,
	})
	tplValidations = append(tplValidations, admissionregistrationv1.Validation{
		Expression:        "!variables.cfgReject || size(variables.problems) == 0",
		MessageExpression: "'pushgateway-lifecycle: ' + " + aggregate + ` + " (in the " + object.kind + "'s pod template)"`,
		Reason:            &forbidden,
	})

	vap := func(n string, rules *admissionregistrationv1.MatchResources, conds []admissionregistrationv1.MatchCondition, root string, vals []admissionregistrationv1.Validation) *admissionregistrationv1.ValidatingAdmissionPolicy {
		return &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: meta(n),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: rules,
				MatchConditions:  conds,
				Variables:        toVariables(cfg, podVariables(root)),
				Validations:      vals,
				FailurePolicy:    &ignore,
			},
		}
	}
	vapBinding := func(n string) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
		return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: meta(n),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: n, MatchResources: bindingRes(),
				ValidationActions: []admissionregistrationv1.ValidationAction{action},
			},
		}
	}
	// Every problem comes from one of our annotations: a pod without any (the usual case) is
	// not evaluated at all, which keeps the validating policy off most pods' creation path.
	ours := func(root string) admissionregistrationv1.MatchCondition {
		return admissionregistrationv1.MatchCondition{Name: "has-settings", Expression: root + ".metadata.?annotations.orValue({}).exists(k, k.startsWith(" +
			lit(annotations.Prefix) + ") && k != " + lit(annotations.AnnotationStatus) + ")"}
	}
	out.Validating = vap(name, podRules.DeepCopy(), append(conditions("object", podSel), ours("object")), "object", podValidations)
	out.ValidatingBinding = vapBinding(name)
	wname := name + "-workloads"
	out.WorkloadValidating = vap(wname, workloadRules, append(conditions("("+workloadTemplate+")", tplSel), ours("("+workloadTemplate+")")), workloadTemplate, tplValidations)
	out.WorkloadValidatingBinding = vapBinding(wname)
	return out, nil
}

// selectionCEL is the pod selection of engine.Decide: the policy's selector or the inject label.
func selectionCEL(pol *policy.Policy, root string) (string, error) {
	l := root + ".metadata.?labels.orValue({})"
	sel, err := selectorCEL(pol.Selector, l)
	if err != nil {
		return "", err
	}
	return l + "[?" + lit(annotations.LabelInject) + "].orValue('') == 'true' || (" + sel + ")", nil
}

// mutationCEL is engine.Apply as a JSON patch, built from the decision like pkg/webhook's.
func mutationCEL() string {
	statusPath := "/metadata/annotations/" + strings.ReplaceAll(annotations.AnnotationStatus, "/", "~1")
	// statusOps writes the status s unless the pod's annotations would then exceed the API
	// server's limit (engine.limitStatus): no operation at all then.
	statusOps := func(s string) string {
		return "(variables.annSize + size(bytes(" + s + ")) > " + strconv.Itoa(engine.TotalAnnotationSizeLimit) + " ? [] : [" +
			"(has(object.metadata.annotations) ? JSONPatch{op: 'add', path: " + lit(statusPath) + ", value: " + s + "} : " +
			"JSONPatch{op: 'add', path: '/metadata/annotations', value: {" + lit(annotations.AnnotationStatus) + ": " + s + "}})])"
	}
	hook := "(variables.action == 'exec' ? " +
		"Object.spec.containers.lifecycle.preStop{exec: Object.spec.containers.lifecycle.preStop.exec{command: ['/bin/sh', '-c', 'sleep ' + string(variables.sleep)]}} : " +
		"Object.spec.containers.lifecycle.preStop{sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: variables.sleep}})"
	hooks := "object.spec.containers.transformList(i, c, c.name in variables.change, " +
		"!has(c.lifecycle) ? JSONPatch{op: 'add', path: '/spec/containers/' + string(i) + '/lifecycle', value: Object.spec.containers.lifecycle{preStop: " + hook + "}} : " +
		"JSONPatch{op: has(c.lifecycle.preStop) ? 'replace' : 'add', path: '/spec/containers/' + string(i) + '/lifecycle/preStop', value: " + hook + "})"
	// Only the fields engine.Apply lowers are written: initialDelaySeconds (present, as it is
	// above 0) and periodSeconds (added if absent), as BuildPatch does.
	probes := "object.spec.containers.transformList(i, c, c.name in variables.readinessDelay, " +
		"JSONPatch{op: 'replace', path: '/spec/containers/' + string(i) + '/readinessProbe/initialDelaySeconds', value: 0}) + " +
		"object.spec.containers.transformList(i, c, c.name in variables.readinessPeriod, " +
		"JSONPatch{op: has(c.readinessProbe.periodSeconds) ? 'replace' : 'add', path: '/spec/containers/' + string(i) + '/readinessProbe/periodSeconds', value: " +
		strconv.Itoa(int(engine.ReadinessMaxPeriod)) + "})"
	unchanged := "size(variables.change) == 0 && !variables.graceChanged && size(variables.readinessDelay) == 0 && size(variables.readinessPeriod) == 0"
	return "variables.denied ? [] : " +
		"variables.skipStatus != '' ? (variables.skipStatus == variables.currentStatus ? [] : " + statusOps("variables.skipStatus") + ") : " +
		unchanged + " ? (" + lit(annotations.AnnotationStatus) + " in variables.ann ? [] : " + statusOps("variables.statusText") + ") : " +
		hooks + " + " + probes + " + " +
		"(variables.graceChanged ? [JSONPatch{op: variables.graceSet ? 'replace' : 'add', path: '/spec/terminationGracePeriodSeconds', value: variables.newGrace}] : []) + " +
		"(variables.statusText == variables.currentStatus ? [] : " + statusOps("variables.statusText") + ")"
}

// namespaceSelector is the webhook configuration's: opted-in namespaces (or all, with
// ClusterScope), never kube-system or the excluded ones.
func namespaceSelector(opts Options) *metav1.LabelSelector {
	excluded := append([]string{"kube-system"}, opts.ExcludedNamespaces...)
	sel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded,
	}}}
	if !opts.ClusterScope {
		sel.MatchLabels = map[string]string{annotations.LabelInjection: annotations.InjectionEnabled}
	}
	return sel
}
