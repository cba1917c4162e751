package webhook

import (
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// PathValidateWorkloads is where the API server sends workload CREATE and UPDATE requests.
const PathValidateWorkloads = "/validate-workloads"

// WorkloadKinds are the kinds whose pod template the validator checks.
var WorkloadKinds = map[string]bool{
	"Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true, "Job": true, "CronJob": true,
}

// WorkloadValidator runs the pod annotation checks on a workload's pod template, so that a
// typo fails (or warns) at `kubectl apply` instead of when the controller creates pods.
type WorkloadValidator struct {
	Policy PolicySource
	Log    logr.Logger
}

// ServeHTTP decodes the review and answers allowed, allowed with warnings, or denied.
func (h *WorkloadValidator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, r, h.Log, h.Review)
}

// Review answers one decoded request.
func (h *WorkloadValidator) Review(req *request[templateView]) *admissionv1.AdmissionResponse {
	if !WorkloadKinds[req.Kind.Kind] || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.Object == nil {
		metrics.WorkloadsTotal.WithLabelValues("skipped").Inc()
		return allowed(req.UID, "")
	}
	tpl := req.Object.template()
	if tpl == nil {
		metrics.WorkloadsTotal.WithLabelValues("skipped").Inc()
		return allowed(req.UID, "")
	}
	pol := h.Policy.Current()
	d := engine.Decide(tpl.pod(), req.Namespace, pol)
	if len(d.Problems) == 0 {
		metrics.WorkloadsTotal.WithLabelValues("valid").Inc()
		return allowed(req.UID, "")
	}
	log := h.Log.WithValues("uid", req.UID, "namespace", req.Namespace, "kind", req.Kind.Kind, "name", req.Object.Metadata.Name)
	if pol.OnInvalid == policy.OnInvalidReject {
		metrics.WorkloadsTotal.WithLabelValues("denied").Inc()
		log.Info("denied workload with invalid pod template settings", "problems", len(d.Problems))
		return denied(req.UID, d.DenyMessage()+" (in the "+req.Kind.Kind+"'s pod template)")
	}
	metrics.WorkloadsTotal.WithLabelValues("warned").Inc()
	log.V(1).Info("warned about invalid pod template settings", "problems", len(d.Problems))
	resp := allowed(req.UID, "")
	resp.Warnings = make([]string, 0, len(d.Problems))
	for _, e := range d.Problems {
		resp.Warnings = append(resp.Warnings, "pushgateway-lifecycle: pod template "+e.Error()+"; pods will use the policy default")
	}
	return resp
}
