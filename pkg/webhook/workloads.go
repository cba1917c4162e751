package webhook

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// PathValidateWorkloads is where the API server sends workload CREATE and UPDATE requests.
const PathValidateWorkloads = "/validate-workloads"

// WorkloadValidator runs the pod annotation checks on a workload's pod template, so that a
// typo fails (or warns) at `kubectl apply` instead of when the controller creates pods.
//
// It checks what people write, never what controllers write from it: an object with a
// controller ownerReference (a Deployment's ReplicaSets, a CronJob's Jobs) is skipped, as is
// an UPDATE that leaves the pod template as it was (a scale, a label change). Denying those
// would not reach the person who wrote the template, only stall a rollout or a schedule
// (visible as controller events), for a template that was admitted earlier or under an older
// policy. For the same reason an UPDATE is denied only for problems it introduces: problems
// the stored template already had are warned about, as Kubernetes' own validation ratcheting
// does. The chart's matchConditions make the same choices in the API server, so such requests
// are not even sent; the checks here hold when the webhook is registered without them.
type WorkloadValidator struct {
	Policy PolicySource
	Log    logr.Logger
}

// ServeHTTP decodes the review and answers allowed, allowed with warnings, or denied.
func (h *WorkloadValidator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, r, h.Log, h.Review)
}

// workloadObject is a workload as the validator reads it: the sparse template view the
// annotation checks run on, and the object's bytes for the data-risk rules, which read the
// whole template (arguments, mounts, volumes). Workloads are written by people at apply
// time, far from the pod hot path, so the second decode costs nothing that matters.
type workloadObject struct {
	engine.TemplateView
	raw []byte
}

func (o *workloadObject) UnmarshalJSON(b []byte) error {
	// The request body is a pooled buffer: keep a copy, not a view of it.
	o.raw = bytes.Clone(b)
	return engine.DecodeJSON(b, &o.TemplateView)
}

// Review answers one decoded request.
func (h *WorkloadValidator) Review(req *request[workloadObject]) *admissionv1.AdmissionResponse {
	if w, ok := engine.WorkloadOf(req.Kind.Kind); !ok || !w.Validated || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.Object == nil ||
		req.Object.Controlled() {
		metrics.WorkloadsTotal.WithLabelValues("skipped").Inc()
		return allowed(req.UID, "")
	}
	tpl := req.Object.PodTemplate()
	if tpl == nil {
		metrics.WorkloadsTotal.WithLabelValues("skipped").Inc()
		return allowed(req.UID, "")
	}
	var old *engine.PodView
	if req.Operation == admissionv1.Update && req.OldObject != nil {
		old = req.OldObject.PodTemplate()
		// Equal in every field the checks read: the answer would be the stored object's.
		if old != nil && equality.Semantic.DeepEqual(old, tpl) &&
			equality.Semantic.DeepEqual(req.Object.Spec.Replicas, req.OldObject.Spec.Replicas) &&
			equality.Semantic.DeepEqual(req.Object.Spec.Strategy, req.OldObject.Spec.Strategy) {
			metrics.WorkloadsTotal.WithLabelValues("skipped").Inc()
			return allowed(req.UID, "")
		}
	}
	pol := h.Policy.Current()
	d := engine.Decide(tpl.Pod(), req.Namespace, pol)
	risks := h.risks(req, &d)
	if len(d.Problems) == 0 {
		metrics.WorkloadsTotal.WithLabelValues("valid").Inc()
		resp := allowed(req.UID, "")
		resp.Warnings = risks
		return resp
	}
	fresh := d.Problems
	if old != nil {
		fresh = introduced(d.Problems, engine.Decide(old.Pod(), req.Namespace, pol).Problems)
	}
	log := h.Log.WithValues("uid", req.UID, "namespace", req.Namespace, "kind", req.Kind.Kind, "name", req.Object.Metadata.Name)
	if pol.OnInvalid == policy.OnInvalidReject && len(fresh) > 0 {
		metrics.WorkloadsTotal.WithLabelValues("denied").Inc()
		log.Info("denied workload with invalid pod template settings", "problems", len(fresh))
		deny := engine.Decision{Problems: fresh}
		return denied(req.UID, deny.DenyMessage()+" (in the "+req.Kind.Kind+"'s pod template)")
	}
	metrics.WorkloadsTotal.WithLabelValues("warned").Inc()
	log.V(1).Info("warned about invalid pod template settings", "problems", len(d.Problems), "introduced", len(fresh))
	// Under reject only an UPDATE that keeps the stored template's problems gets here; the pod
	// webhook still refuses pods with them, so the warning must not promise defaults.
	consequence := "; pods will use the policy default"
	if pol.OnInvalid == policy.OnInvalidReject {
		consequence = "; kept from the stored object, but pods with it are refused (onInvalid: reject)"
	}
	resp := allowed(req.UID, "")
	resp.Warnings = make([]string, 0, len(d.Problems)+len(risks))
	for _, e := range d.Problems {
		resp.Warnings = append(resp.Warnings, "pushgateway-lifecycle: pod template "+e.Error()+consequence)
	}
	resp.Warnings = append(resp.Warnings, risks...)
	return resp
}

// risks are the data-risk warnings of the workload (engine.Risks): what no pod spec saves.
// A workload that does not decode fully gets none; the API server refuses it anyway.
func (h *WorkloadValidator) risks(req *request[workloadObject], d *engine.Decision) []string {
	if !engine.HasRisks(req.Kind.Kind, d) {
		return nil // no second decode for the workloads the rules leave alone
	}
	w, err := engine.DecodeWorkload(req.Object.raw, req.Kind.Kind)
	if err != nil || w == nil {
		return nil
	}
	rs := engine.Risks(w, d)
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if r.Info {
			// What a crash loses is no mistake: a Warning on every correct apply would teach
			// people to ignore the ones that are. audit and mutate show it.
			continue
		}
		out = append(out, "pushgateway-lifecycle: "+strings.ToLower(req.Kind.Kind)+"/"+req.Object.Metadata.Name+": "+r.String())
	}
	return out
}

// introduced returns the problems of now that were not already problems of before (the same
// field, value and reason, both judged under the current policy).
func introduced(now, before field.ErrorList) field.ErrorList {
	if len(before) == 0 {
		return now
	}
	seen := make(map[string]bool, len(before))
	for _, e := range before {
		seen[e.Error()] = true
	}
	var out field.ErrorList
	for _, e := range now {
		if !seen[e.Error()] {
			out = append(out, e)
		}
	}
	return out
}
