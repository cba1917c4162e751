package engine

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// The drain: a Pushgateway without persistence loses its store with its pod, so what it
// acknowledged survives only if Prometheus scraped it before the process ended. The preStop
// sleep keeps the process up, but under a Recreate rollout (or any replacement that waits for
// the old pod) the terminating pod is the Service's only endpoint and kube-proxy keeps routing
// pushes to it until it exits: every push acknowledged after Prometheus' last scrape is lost
// (docs/interruptions.md measured 180 in one rollout). A pod spec cannot stop the routing and
// keep the scrape (the readiness probe cannot fail on purpose without a shell), so the webhook
// adds a readiness gate whose condition the product turns False when the pod is deleted: the
// kubelet reports the terminating pod not Ready, its endpoint stops serving, pushes are refused
// (the client sees an error and can retry), and Prometheus, which scrapes the pod's own
// address, collects the rest during the sleep.

// storeSurvives reports whether container c persists its store on a volume that outlives the
// pod (a claim, a claim template's claim, a hostPath, or any other non-ephemeral source).
func storeSurvives(pod *corev1.Pod, c *corev1.Container) bool {
	s := findStore(c, &Workload{Pod: pod})
	return s.file != "" && s.kind != "" && s.kind != "ephemeral"
}

// drainCandidate decides whether the pod gets the drain when the controller runs: a target
// container whose store does not survive the pod, and neither the policy nor the pod opted out.
func drainCandidate(pod *corev1.Pod, set annotations.Settings, pol *policy.Policy, targets []int) bool {
	if pol.Handoff.Mode == annotations.HandoffOff || set.HandoffOff {
		return false
	}
	for _, i := range targets {
		if !storeSurvives(pod, &pod.Spec.Containers[i]) {
			return true
		}
	}
	return false
}

// HasReadinessGate reports whether the pod carries the ConditionAcceptingPushes readiness gate.
func HasReadinessGate(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool {
		return g.ConditionType == annotations.ConditionAcceptingPushes
	})
}

// Drain records in the decision that the pod gets the readiness gate. The caller calls it only
// where the controller that sets the condition runs (the webhook with the handoff gate on):
// without it the pod would never become ready, which is why neither `mutate` nor the
// admission policy adds it.
func Drain(d *Decision, pod *corev1.Pod) {
	if !d.DrainCandidate || HasReadinessGate(pod) || d.Outcome == OutcomeDenied || d.Outcome == OutcomeSkipped {
		return
	}
	d.ReadinessGate = true
	d.HadReadinessGates = len(pod.Spec.ReadinessGates) > 0
	if d.Status == "" {
		d.Status = pod.Annotations[annotations.AnnotationStatus]
	}
	if d.Status != "" {
		d.Status += "; "
	}
	d.Status += "drain: no persistence, so it takes no pushes once deleted (readiness gate " + annotations.ConditionAcceptingPushes + ")"
	d.SetStatus = true
	if d.Outcome == OutcomeUnchanged {
		d.Outcome = OutcomeInjected
	}
}

// Accepting is the drain's decision for a pod with the readiness gate.
type Accepting struct {
	// Status is what the condition should be now.
	Status corev1.ConditionStatus
	// Reason and Message are the condition's.
	Reason, Message string
	// Until, when set, is when a False condition on a pod that is not terminating goes back to
	// True (the delete it was written for never happened); the controller looks again then.
	Until time.Time
}

// Condition reasons of ConditionAcceptingPushes.
const (
	ReasonAccepting = "Accepting"
	ReasonDraining  = "Draining"
)

// DrainHold is how long a condition written False at a pod's DELETE (the drain webhook) stays
// False on a pod that is still not terminating: the delete is persisted milliseconds after its
// admission, so a pod that is still alive after this was not deleted (a failed request).
const DrainHold = 10 * time.Second

// DrainingCondition is the condition the drain webhook writes at a pod's DELETE.
func DrainingCondition(now time.Time) corev1.PodCondition {
	return corev1.PodCondition{
		Type:               annotations.ConditionAcceptingPushes,
		Status:             corev1.ConditionFalse,
		Reason:             ReasonDraining,
		Message:            "deleted: takes no pushes, so that Prometheus scrapes what it acknowledged before its preStop sleep ends (no persistence)",
		LastTransitionTime: metav1.NewTime(now),
	}
}

// DecideAccepting is the drain's rule. The kubelet computes a terminating pod's Ready condition
// once, when the termination begins, and not again until its containers have stopped (it does
// not recompute it during the preStop sleep), so the condition must be False before the
// kubelet sees the deletion: the drain webhook writes it at the DELETE's admission. Here a
// terminating pod stays False; a pod that is not terminating is True, except for DrainHold
// after the webhook wrote False (its delete is on the way).
func DecideAccepting(pod *corev1.Pod, cur *corev1.PodCondition, now time.Time) Accepting {
	if pod.DeletionTimestamp != nil {
		return Accepting{Status: corev1.ConditionFalse, Reason: ReasonDraining,
			Message: "terminating: takes no pushes, so that Prometheus scrapes what it acknowledged before its preStop sleep ends (no persistence)"}
	}
	if cur != nil && cur.Status == corev1.ConditionFalse && cur.Reason == ReasonDraining {
		until := cur.LastTransitionTime.Add(DrainHold)
		if now.Before(until) {
			return Accepting{Status: corev1.ConditionFalse, Reason: ReasonDraining, Message: cur.Message, Until: until}
		}
		return Accepting{Status: corev1.ConditionTrue, Reason: ReasonAccepting,
			Message: fmt.Sprintf("not deleted %s after its DELETE was admitted: takes pushes again", DrainHold)}
	}
	return Accepting{Status: corev1.ConditionTrue, Reason: ReasonAccepting, Message: "the pod is not terminating"}
}
