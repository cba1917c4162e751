// Package audit answers "is every Pushgateway pod in this cluster protected, and what do I
// restart?". The classification is pure: a live pod, whether its namespace is opted in and the
// policy in; a state, the reason and the fix out. It never decides anything itself: it asks
// pkg/engine what the webhook would do with the pod as it is now, and reads the status
// annotation the webhook wrote when it was created. The cluster reading is in cluster.go.
package audit

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// State is the audit verdict for one pod (and, as the worst of its pods, for a workload).
type State string

// The states, from best to worst (see Rank).
const (
	// StateProtected: the live spec is what the engine decides for the pod; a re-admission
	// would change nothing.
	StateProtected State = "Protected"
	// StateOptedOut: the pod asks not to be changed (pushgateway-lifecycle.io/inject=false).
	StateOptedOut State = "OptedOut"
	// StateNotOptedIn: the policy selects the pod, but the webhook is never called for its
	// namespace (not matched by the namespace selector, or always excluded: kube-system, mirror pods).
	StateNotOptedIn State = "NotOptedIn"
	// StateUnprotected: no status annotation and the engine would change the pod: it was
	// created before the webhook was installed, or while the webhook was unreachable (the
	// webhook fails open).
	StateUnprotected State = "Unprotected"
	// StateDrifted: the status annotation is there, but the spec is no longer what the engine
	// decides: the policy or the pod's annotations changed after the pod was created, or the
	// status annotation was copied into a template by hand and the pod was created without the webhook.
	StateDrifted State = "Drifted"
	// StateInvalid: the pod's settings do not parse (the status records them, or the live
	// annotations are invalid now), or no container of the pod can be targeted.
	StateInvalid State = "Invalid"
)

// States lists every state in rank order, for summaries and documentation.
var States = []State{StateProtected, StateOptedOut, StateNotOptedIn, StateUnprotected, StateDrifted, StateInvalid}

// Rank orders states by how much they need attention (a workload shows its worst pod).
func (s State) Rank() int {
	for i, x := range States {
		if x == s {
			return i
		}
	}
	return len(States)
}

// OK reports whether the state needs no action: protected, or opted out on purpose.
func (s State) OK() bool { return s == StateProtected || s == StateOptedOut }

// Selected reports whether the policy selects the pod: the same expression engine.Decide
// uses, needed here because Decide returns before selecting a mirror pod or a kube-system pod,
// which the audit still reports (as never mutated) when they are Pushgateways.
func Selected(pod *corev1.Pod, pol *policy.Policy) bool {
	return pod.Labels[annotations.LabelInject] == "true" || pol.Matches(pod.Labels)
}

// Finished reports whether a pod will never be stopped again, so has nothing left to protect:
// it has completed (a Job's pods) or is already being deleted (its replacement is audited).
func Finished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil
}

// Verdict is the classification of one pod.
type Verdict struct {
	State State
	// Reason says why, in one line: what the engine would change, or which setting is invalid.
	Reason string
	// Outcome is what the engine decided for the pod as it is now.
	Outcome engine.Outcome
}

// Classify decides the state of a live pod the policy selects. optedIn is whether its
// namespace is one the webhook is called for; nil when it could not be read (the namespace
// check is then left out). It calls engine.Decide on the live pod: a pod the webhook admitted
// is a fixed point of the engine (Decide reports it unchanged), so every change Decide still
// wants is something the live pod lacks.
func Classify(pod *corev1.Pod, optedIn *bool, pol *policy.Policy) Verdict {
	d := engine.Decide(pod, pod.Namespace, pol)
	status, hasStatus := pod.Annotations[annotations.AnnotationStatus]
	v := Verdict{Outcome: d.Outcome}
	switch {
	case d.Skip == engine.SkipMirrorPod || d.Skip == engine.SkipKubeSystem:
		v.State, v.Reason = StateNotOptedIn, "the webhook never mutates a "+d.Reason
	case d.Skip == engine.SkipOptedOut:
		v.State, v.Reason = StateOptedOut, annotations.AnnotationInject+"=false"
		if len(d.Problems) > 0 {
			v.Reason += "; invalid: " + problems(&d)
		}
	case d.Outcome == engine.OutcomeSkipped:
		// Selected, not opted out, and still skipped: no container to put the hook on.
		v.State, v.Reason = StateInvalid, d.Reason
	case len(d.Problems) > 0:
		v.State, v.Reason = StateInvalid, problems(&d)
	case hasStatus && strings.Contains(status, "invalid: "):
		// Admitted with defaults in place of settings that did not parse; the annotations
		// were fixed since, but the pod still runs with the defaults.
		v.State, v.Reason = StateInvalid, "created with invalid settings (see the status annotation); the annotations are valid now"
		if d.Outcome == engine.OutcomeInjected {
			v.Reason += "; now: " + Changes(pod, &d)
		}
	case d.Outcome == engine.OutcomeUnchanged:
		v.State = StateProtected
		if !hasStatus {
			v.Reason = "no status annotation, but the spec already is what the policy asks"
		}
	case optedIn != nil && !*optedIn:
		v.State, v.Reason = StateNotOptedIn, "namespace "+pod.Namespace+" is not opted in; would set: "+Changes(pod, &d)
	case !hasStatus:
		v.State, v.Reason = StateUnprotected, "no status annotation (created before the webhook, or while it was unreachable); would set: "+Changes(pod, &d)
	default:
		v.State, v.Reason = StateDrifted, "spec differs from what the policy decides now: "+Changes(pod, &d)
	}
	return v
}

func problems(d *engine.Decision) string {
	parts := make([]string, 0, len(d.Problems))
	for _, e := range d.Problems {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}

// Changes describes what Apply would write into the pod, the live value first.
func Changes(pod *corev1.Pod, d *engine.Decision) string {
	var parts []string
	for _, c := range d.Containers {
		var live *corev1.LifecycleHandler
		if lc := pod.Spec.Containers[c.Index].Lifecycle; lc != nil {
			live = lc.PreStop
		}
		parts = append(parts, fmt.Sprintf("preStop of %s %s -> %s", c.Name, engine.DescribeHook(live), engine.DescribeHook(c.PreStop)))
	}
	for i := range d.Probes {
		c := &d.Probes[i]
		if c.SetsInitialDelay() {
			parts = append(parts, fmt.Sprintf("readinessProbe.initialDelaySeconds of %s %d -> 0", c.Name, c.OldInitialDelay))
		}
		if c.SetsPeriod() {
			old := "unset"
			if c.PeriodSet {
				old = fmt.Sprint(c.OldPeriod)
			}
			parts = append(parts, fmt.Sprintf("readinessProbe.periodSeconds of %s %s -> %d", c.Name, old, c.NewPeriod))
		}
	}
	if d.SetsGrace() {
		old := "unset"
		if d.GraceSet {
			old = fmt.Sprint(d.OldGrace)
		}
		parts = append(parts, fmt.Sprintf("terminationGracePeriodSeconds %s -> %d", old, d.NewGrace))
	}
	if len(parts) == 0 {
		return "the status annotation only"
	}
	return strings.Join(parts, ", ")
}

// Template states: what the webhook would do with a pod created from a workload's template,
// i.e. what a restart produces.
const (
	// TemplateMutated: the webhook changes the template's pods (normal: templates do not
	// carry the hook), so a restart in an opted-in namespace protects them.
	TemplateMutated = "Mutated"
	// TemplateAsWanted: the template already carries what the policy asks.
	TemplateAsWanted = "AsWanted"
	// TemplateOptedOut, TemplateInvalid, TemplateNotSelected: as the pod states; NotSelected
	// means the template's labels do not select its pods (the live pods were labelled by hand).
	TemplateOptedOut    = "OptedOut"
	TemplateInvalid     = "Invalid"
	TemplateNotSelected = "NotSelected"
	// TemplateNeverMutated: the template's pods land in kube-system, which the webhook never sees.
	TemplateNeverMutated = "NeverMutated"
	// TemplateUnknown: the workload could not be read (RBAC), or it has no template (a bare pod).
	TemplateUnknown = ""
)

// ClassifyTemplate runs the engine on a pod built from a workload's pod template.
func ClassifyTemplate(tpl *corev1.PodTemplateSpec, namespace string, pol *policy.Policy) (string, string) {
	state, reason, _ := classifyTemplate(tpl, namespace, pol)
	return state, reason
}

// classifyTemplate also returns the engine's decision when it made one (the template is
// selected), which the data-risk rules read.
func classifyTemplate(tpl *corev1.PodTemplateSpec, namespace string, pol *policy.Policy) (string, string, *engine.Decision) {
	pod := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	pod.Namespace = namespace
	if !Selected(pod, pol) {
		return TemplateNotSelected, "", nil
	}
	d := engine.Decide(pod, namespace, pol)
	switch {
	case d.Skip == engine.SkipOptedOut:
		return TemplateOptedOut, "", &d
	case d.Skip == engine.SkipMirrorPod || d.Skip == engine.SkipKubeSystem:
		return TemplateNeverMutated, "the webhook never mutates a " + d.Reason, &d
	case d.Outcome == engine.OutcomeSkipped:
		return TemplateInvalid, d.Reason, &d
	case len(d.Problems) > 0:
		return TemplateInvalid, problems(&d), &d
	case d.Outcome == engine.OutcomeUnchanged:
		return TemplateAsWanted, "", &d
	}
	return TemplateMutated, "", &d
}

// TemplateVerdict is what the webhook does with a workload's pod template (a Template*
// constant and why it is invalid) and the data risks of the workload around it
// (engine.Risks: what no pod spec saves).
type TemplateVerdict struct {
	State, Reason string
	Risks         []engine.Risk
}

// ClassifyWorkload classifies the pod template of a workload object (a Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job or CronJob) and names its data risks. Another
// object has no template this package knows: the zero verdict.
func ClassifyWorkload(obj runtime.Object, namespace string, pol *policy.Policy) TemplateVerdict {
	w, tpl := workloadOf(obj)
	if tpl == nil {
		return TemplateVerdict{}
	}
	state, reason, d := classifyTemplate(tpl, namespace, pol)
	v := TemplateVerdict{State: state, Reason: reason}
	if d != nil {
		w.Pod = &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
		v.Risks = engine.Risks(w, d)
	}
	return v
}

// workloadOf is what the risk rules read of a typed workload, and its pod template.
func workloadOf(obj runtime.Object) (*engine.Workload, *corev1.PodTemplateSpec) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &engine.Workload{Kind: "Deployment", Replicas: o.Spec.Replicas, Strategy: string(o.Spec.Strategy.Type)}, &o.Spec.Template
	case *appsv1.StatefulSet:
		w := &engine.Workload{Kind: "StatefulSet", Replicas: o.Spec.Replicas}
		for _, c := range o.Spec.VolumeClaimTemplates {
			w.ClaimTemplates = append(w.ClaimTemplates, c.Name)
		}
		return w, &o.Spec.Template
	case *appsv1.DaemonSet:
		return &engine.Workload{Kind: "DaemonSet"}, &o.Spec.Template
	case *appsv1.ReplicaSet:
		return &engine.Workload{Kind: "ReplicaSet", Replicas: o.Spec.Replicas}, &o.Spec.Template
	case *batchv1.Job:
		return &engine.Workload{Kind: "Job"}, &o.Spec.Template
	case *batchv1.CronJob:
		return &engine.Workload{Kind: "CronJob"}, &o.Spec.JobTemplate.Spec.Template
	}
	return nil, nil
}
