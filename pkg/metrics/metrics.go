// Package metrics defines the product's own Prometheus metrics, registered on
// controller-runtime's registry so they are served next to its webhook metrics
// (controller_runtime_webhook_requests_total, _latency_seconds, _in_flight).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// PodsTotal counts admission decisions for pods by outcome (injected, unchanged, skipped,
	// invalid, denied).
	PodsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_pods_total",
		Help: "Pods seen by the mutating webhook, by outcome.",
	}, []string{"outcome"})
	// WorkloadsTotal counts workload validations by result (valid, warned, denied, skipped).
	WorkloadsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_workloads_total",
		Help: "Workloads checked by the validating webhook, by result.",
	}, []string{"result"})
	// PolicyReloadsTotal counts policy file loads by result (success, failure).
	PolicyReloadsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_policy_reloads_total",
		Help: "Policy file (re)loads, by result. A failure keeps the last good policy.",
	}, []string{"result"})
	// RequestErrorsTotal counts requests that could not be decoded, by reason.
	RequestErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_request_errors_total",
		Help: "Admission requests answered with an error, by reason.",
	}, []string{"reason"})

	// HandoffChecksTotal counts the admission path's handoff lookups by result: gated (a
	// terminating pod holds the claim), free (none does), error (the lookup failed: the pod
	// was admitted ungated, with a warning).
	HandoffChecksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_handoff_checks_total",
		Help: "Handoff lookups at admission of pods that mount a shared volume, by result (gated, free, error).",
	}, []string{"result"})
	// UnprotectedPods is the drift watch's count of selected, running pods that lack the
	// product's spec, by namespace and audit state (Unprotected, Drifted, Invalid).
	UnprotectedPods = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushgateway_lifecycle_unprotected_pods",
		Help: "Selected running pods without the product's spec (the audit states Unprotected, Drifted and Invalid), by the pods' namespace (pod_namespace: the scrape adds its own namespace label) and state; reported by the controller's leader.",
	}, []string{"pod_namespace", "state"})
	// HandoffHeldPods is the number of pods held by the handoff gate now.
	HandoffHeldPods = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushgateway_lifecycle_handoff_held_pods",
		Help: "Pods held by the pushgateway-lifecycle.io/handoff scheduling gate.",
	})
	// HandoffHoldSeconds is how long each gated pod was held, from its creation to the lift,
	// by result (released: its predecessor stopped; timed_out: handoff.maxWait passed).
	HandoffHoldSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushgateway_lifecycle_handoff_hold_seconds",
		Help:    "Time a pod was held by the handoff gate, from creation to release, by result (released, timed_out).",
		Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600},
	}, []string{"result"})
)

func init() {
	crmetrics.Registry.MustRegister(PodsTotal, WorkloadsTotal, PolicyReloadsTotal, RequestErrorsTotal,
		HandoffChecksTotal, HandoffHeldPods, HandoffHoldSeconds, UnprotectedPods)
	for _, r := range []string{"gated", "free", "error"} {
		HandoffChecksTotal.WithLabelValues(r)
	}
	for _, r := range []string{"released", "timed_out"} {
		HandoffHoldSeconds.WithLabelValues(r)
	}
	// Pre-create the series so dashboards and alerts see zeros instead of absent series.
	for _, o := range []string{"injected", "unchanged", "skipped", "invalid", "denied"} {
		PodsTotal.WithLabelValues(o)
	}
	for _, r := range []string{"success", "failure"} {
		PolicyReloadsTotal.WithLabelValues(r)
	}
}
