// Package metrics defines the product's own Prometheus metrics, registered on
// controller-runtime's registry so they are served next to its webhook metrics
// (controller_runtime_webhook_requests_total, _latency_seconds, _in_flight).
package metrics

import (
	"sync"

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
	// DrainTransitionsTotal counts the writes of the pushgateway-lifecycle.io/accepting-pushes
	// condition, by writer (webhook: at a DELETE's admission, in time; controller: the first
	// True, the True of a pod whose delete never happened, and a late False, after the kubelet
	// computed the terminating pod's Ready) and the status written.
	DrainTransitionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_drain_transitions_total",
		Help: "Writes of the pushgateway-lifecycle.io/accepting-pushes pod condition, by writer (webhook, controller) and status (True, False); controller False means drained too late.",
	}, []string{"writer", "status"})
	// HandoffHoldSeconds is how long each gated pod was held, from its creation to the lift,
	// by result (released: its predecessor stopped; timed_out: handoff.maxWait passed).
	HandoffHoldSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushgateway_lifecycle_handoff_hold_seconds",
		Help:    "Time a pod was held by the handoff gate, from creation to release, by result (released, timed_out).",
		Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600},
	}, []string{"result"})
)

// The certificate rotator's metrics. They are registered by RegisterCertificateMetrics, which
// the rotator calls when it starts, not at init: with cert-manager there is no rotator, and a
// clock skew gauge stuck at 0 or an absent expiry would read as a healthy rotator.
var (
	// CertificateExpiry is the expiry (Unix time) of the rotator's CA and serving certificate.
	CertificateExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushgateway_lifecycle_certificate_expiry_timestamp_seconds",
		Help: "Expiry (Unix time) of the certificates managed by the in-process rotator (type=ca|serving).",
	}, []string{"type"})
	// CertificateRotationsTotal counts what the rotator generated, promoted and failed.
	CertificateRotationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_certificate_rotations_total",
		Help: "Certificates generated by the in-process rotator (type=ca|serving), CAs promoted to signing after the rollover grace (type=ca_promoted), and failed attempts (type=error).",
	}, []string{"type"})
	// CertificateClockSkew is this replica's clock minus the API server's.
	CertificateClockSkew = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushgateway_lifecycle_certificate_clock_skew_seconds",
		Help: "This replica's clock minus the API server's (from the Date header of GET /version), as last measured by the certificate rotator; beyond 30 s in either direction the rotator uses the API server's time.",
	})
	// CertificateClockChecksTotal counts the rotator's reads of the API server's clock.
	CertificateClockChecksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_certificate_clock_checks_total",
		Help: "Reads of the API server's clock by the certificate rotator (result=ok|error); while they fail, expiry is judged by this replica's clock.",
	}, []string{"result"})
	registerCertificatesOnce sync.Once
)

// RegisterCertificateMetrics registers the rotator's metrics; calling it again does nothing.
func RegisterCertificateMetrics() {
	registerCertificatesOnce.Do(func() {
		crmetrics.Registry.MustRegister(CertificateExpiry, CertificateRotationsTotal, CertificateClockSkew, CertificateClockChecksTotal)
	})
}

func init() {
	crmetrics.Registry.MustRegister(PodsTotal, WorkloadsTotal, PolicyReloadsTotal, RequestErrorsTotal,
		HandoffChecksTotal, HandoffHeldPods, HandoffHoldSeconds, UnprotectedPods, DrainTransitionsTotal)
	DrainTransitionsTotal.WithLabelValues("webhook", "False")
	for _, s := range []string{"True", "False"} {
		DrainTransitionsTotal.WithLabelValues("controller", s)
	}
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
