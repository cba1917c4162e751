package engine

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

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
// adds a readiness gate and the controller turns its condition False handoff.drainWindow
// before the sleep ends: the endpoint stops serving, pushes are refused (the client sees an
// error and can retry), and Prometheus, which scrapes the pod's own address, collects the rest.

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
	d.Status += "drain: no persistence, so it stops taking pushes before its preStop sleep ends (readiness gate " + annotations.ConditionAcceptingPushes + ")"
	d.SetStatus = true
	if d.Outcome == OutcomeUnchanged {
		d.Outcome = OutcomeInjected
	}
}

// Accepting is the controller's decision for a pod with the readiness gate.
type Accepting struct {
	// Status is what the condition should be now.
	Status corev1.ConditionStatus
	// Reason and Message are the condition's.
	Reason, Message string
	// At is when the pod stops taking pushes (zero while it is not terminating); when Status
	// is True and At is set, the controller looks again then.
	At time.Time
}

// Condition reasons of ConditionAcceptingPushes.
const (
	ReasonAccepting = "Accepting"
	ReasonDraining  = "Draining"
)

// DecideAccepting is the drain rule. A live pod accepts pushes. A terminating pod stops
// window before its preStop sleep ends: the termination began at deletionTimestamp minus the
// grace period the delete gave, the kubelet sends SIGTERM when the sleep of the target
// container ends (or when the grace period does, if shorter), and the sleep read is the
// shortest of the targets' (the first SIGTERM is the one that matters). A sleep that cannot be
// read (a hook that is not a sleep) or a window longer than the sleep stops it at once.
func DecideAccepting(pod *corev1.Pod, pol *policy.Policy, now time.Time) Accepting {
	if pod.DeletionTimestamp == nil {
		return Accepting{Status: corev1.ConditionTrue, Reason: ReasonAccepting, Message: "the pod is not terminating"}
	}
	var grace int64
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		grace = *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	start := pod.DeletionTimestamp.Add(-time.Duration(grace) * time.Second)
	sleep := int64(-1)
	for _, name := range Decide(pod, pod.Namespace, pol).Targets {
		c := container(pod, name)
		if c == nil || c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			continue
		}
		if s, ok := HookSleepSeconds(c.Lifecycle.PreStop); ok && (sleep < 0 || s < sleep) {
			sleep = s
		}
	}
	sleep = min(max(sleep, 0), grace)
	window := int64(pol.Handoff.DrainWindow)
	at := start.Add(time.Duration(max(sleep-window, 0)) * time.Second)
	if now.Before(at) {
		return Accepting{Status: corev1.ConditionTrue, Reason: ReasonAccepting, At: at,
			Message: fmt.Sprintf("terminating: takes pushes until %s, %ds before its %ds preStop sleep ends (handoff.drainWindow)", at.UTC().Format(time.RFC3339), min(window, sleep), sleep)}
	}
	return Accepting{Status: corev1.ConditionFalse, Reason: ReasonDraining, At: at,
		Message: fmt.Sprintf("terminating: takes no pushes since %s so that Prometheus scrapes what it acknowledged before its %ds preStop sleep ends (no persistence; handoff.drainWindow %s)", at.UTC().Format(time.RFC3339), sleep, pol.Handoff.DrainWindow)}
}
