package webhook

import (
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// PathMutatePods is where the API server sends pod CREATE requests.
const PathMutatePods = "/mutate-v1-pod"

// PolicySource returns the policy in force; the file watcher swaps it atomically.
type PolicySource interface {
	Current() *policy.Policy
}

// StaticPolicy is a PolicySource that never changes (tests, the floor, no --policy flag).
type StaticPolicy struct{ P *policy.Policy }

// Current returns the policy.
func (s StaticPolicy) Current() *policy.Policy { return s.P }

// PodMutator is the mutating webhook for pods.
type PodMutator struct {
	Policy PolicySource
	// Log gets one line per decision at V(1) and every error; never an object's content, which
	// may hold secrets in env values.
	Log logr.Logger
	// Handoff answers which terminating pods still hold a volume that a new pod would share
	// (pkg/handoff.Index); nil when the handoff gate is off.
	Handoff HolderSource
}

// HolderSource finds the terminating pods that hold a new pod's shared volumes.
type HolderSource interface {
	Holders(namespace, name string, keys []string) ([]engine.Holder, error)
}

var patchTypeJSON = admissionv1.PatchTypeJSONPatch

// ServeHTTP decodes the review, decides, and answers with the patch.
func (h *PodMutator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, r, h.Log, h.Review)
}

// Review answers one decoded request.
func (h *PodMutator) Review(req *request[engine.PodView]) *admissionv1.AdmissionResponse {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		// A webhook configuration that sends other objects is a misconfiguration; fail open
		// rather than block them.
		metrics.PodsTotal.WithLabelValues(string(engine.OutcomeSkipped)).Inc()
		return allowed(req.UID, "pushgateway-lifecycle only mutates pods; ignored "+req.Kind.Kind)
	}
	if req.Operation != admissionv1.Create {
		metrics.PodsTotal.WithLabelValues(string(engine.OutcomeSkipped)).Inc()
		return allowed(req.UID, "")
	}
	if req.Object == nil {
		err := &badRequest{http.StatusBadRequest, "no_object", "request.object is missing: a pod CREATE must carry the pod"}
		metrics.RequestErrorsTotal.WithLabelValues(err.reason).Inc()
		return &admissionv1.AdmissionResponse{UID: req.UID, Result: statusOf(err)}
	}
	if k := req.Object.Kind; k != "" && k != "Pod" {
		err := &badRequest{http.StatusBadRequest, "not_a_pod", "request.object is a " + truncate(k) + ", expected a Pod"}
		metrics.RequestErrorsTotal.WithLabelValues(err.reason).Inc()
		return &admissionv1.AdmissionResponse{UID: req.UID, Result: statusOf(err)}
	}

	pod := req.Object.Pod()
	d := engine.Decide(pod, req.Namespace, h.Policy.Current())
	if h.Handoff != nil && len(d.HandoffKeys) > 0 {
		h.gate(&d, pod, req.Namespace)
	}
	if h.Handoff != nil {
		// The controller that sets the gate's condition runs wherever the handoff index does.
		engine.Drain(&d, pod)
	}
	metrics.PodsTotal.WithLabelValues(string(d.Outcome)).Inc()
	// The logger with the request's values is built only where a line is written: WithValues
	// on every request costs more than the engine (BenchmarkHandlerZap).
	log := func() logr.Logger {
		name := pod.Name
		if name == "" {
			name = pod.GenerateName
		}
		return h.Log.WithValues("uid", req.UID, "namespace", req.Namespace, "pod", name)
	}
	debug := h.Log.V(1).Enabled()

	switch d.Outcome {
	case engine.OutcomeDenied:
		log().Info("denied pod with invalid settings", "problems", len(d.Problems))
		return denied(req.UID, d.DenyMessage())
	case engine.OutcomeSkipped, engine.OutcomeUnchanged:
		if !d.SetStatus {
			if debug {
				log().V(1).Info("pod left unchanged", "outcome", d.Outcome, "reason", d.Reason)
			}
			r := allowed(req.UID, "")
			if d.StatusOmitted {
				// The only trace of the record the pod did not get.
				r.Warnings = d.Warnings
			}
			return r
		}
	}
	patch, err := engine.BuildPatch(&d)
	if err != nil {
		log().Error(err, "building the patch")
		// Fail open: a pod without the hook is better than a pod not created.
		return allowed(req.UID, "pushgateway-lifecycle: internal error building the patch")
	}
	if debug {
		log().V(1).Info("pod mutated", "outcome", d.Outcome, "status", d.Status)
	}
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true, Warnings: d.Warnings}
	if patch != nil {
		resp.Patch = patch
		resp.PatchType = &patchTypeJSON
	}
	return resp
}

// gate holds the pod if a terminating pod still holds one of its shared volumes. An error
// (the index not synced, the confirming GET failed) lets the pod start ungated with a
// warning: holding every replacement while the API server is slow would turn a degraded
// webhook into pods that never start; the lost handoff is visible in the metric and warning.
func (h *PodMutator) gate(d *engine.Decision, pod *corev1.Pod, namespace string) {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName
	}
	holders, err := h.Handoff.Holders(namespace, pod.Name, d.HandoffKeys)
	if err != nil {
		metrics.HandoffChecksTotal.WithLabelValues("error").Inc()
		h.Log.Error(err, "handoff check failed; the pod starts without the gate", "namespace", namespace, "pod", name)
		d.Warnings = append(d.Warnings, "pushgateway-lifecycle: the handoff check failed ("+truncate(err.Error())+"); this pod is not held for a terminating predecessor")
		return
	}
	if len(holders) == 0 {
		metrics.HandoffChecksTotal.WithLabelValues("free").Inc()
		return
	}
	metrics.HandoffChecksTotal.WithLabelValues("gated").Inc()
	engine.Gate(d, pod, holders)
}
