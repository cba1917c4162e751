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
)

func init() {
	crmetrics.Registry.MustRegister(PodsTotal, WorkloadsTotal, PolicyReloadsTotal, RequestErrorsTotal)
	// Pre-create the series so dashboards and alerts see zeros instead of absent series.
	for _, o := range []string{"injected", "unchanged", "skipped", "invalid", "denied"} {
		PodsTotal.WithLabelValues(o)
	}
	for _, r := range []string{"success", "failure"} {
		PolicyReloadsTotal.WithLabelValues(r)
	}
}
