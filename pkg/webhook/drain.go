package webhook

import (
	"context"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// PathDrainPods is where the API server sends the DELETE of a pod that carries the drain's
// readiness gate (the validating webhook drain.pushgateway-lifecycle.io).
const PathDrainPods = "/drain-v1-pod"

// drainTimeout bounds the status write: the API server's call to this webhook times out after
// the configuration's timeoutSeconds, and the delete must go on either way.
const drainTimeout = 3 * time.Second

// Drainer writes the pod's annotations.ConditionAcceptingPushes condition False
// (pkg/handoff.Index).
type Drainer interface {
	Drain(ctx context.Context, pod *corev1.Pod) error
}

// PodDrainer is the drain webhook: at the admission of a pod's DELETE it writes the drain's
// condition False, before the deletion is stored, because the kubelet computes a terminating
// pod's Ready once, when it sees the deletion, and keeps it during the preStop sleep (see
// engine.DecideAccepting). It never denies: a delete must not depend on this product.
// Side effect on the status only, never on a dry run (sideEffects: NoneOnDryRun).
type PodDrainer struct {
	Drainer Drainer
	Log     logr.Logger
}

// ServeHTTP decodes the review and answers it.
func (h *PodDrainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, r, h.Log, h.Review)
}

// Review answers one decoded request.
func (h *PodDrainer) Review(req *request[corev1.Pod]) *admissionv1.AdmissionResponse {
	pod := req.OldObject
	switch {
	case req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Delete,
		req.DryRun != nil && *req.DryRun,
		pod == nil, pod.DeletionTimestamp != nil, !engine.HasReadinessGate(pod):
		return allowed(req.UID, "")
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == annotations.ConditionAcceptingPushes && c.Status == corev1.ConditionFalse {
			return allowed(req.UID, "")
		}
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := h.Drainer.Drain(ctx, pod); err != nil {
		h.Log.Error(err, "draining the pod failed; it may take pushes until its preStop sleep ends", "namespace", pod.Namespace, "pod", pod.Name)
		r := allowed(req.UID, "")
		r.Warnings = []string{"pushgateway-lifecycle: the drain of pod " + pod.Name + " failed (" + truncate(err.Error()) + "); it takes pushes until its preStop sleep ends, and those after Prometheus' last scrape are lost"}
		return r
	}
	if h.Log.V(1).Enabled() {
		h.Log.V(1).Info("drained", "namespace", pod.Namespace, "pod", pod.Name)
	}
	return allowed(req.UID, "")
}
