package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// workloadReview is an AdmissionReview for a workload, with the stored object for an UPDATE.
func workloadReview(t *testing.T, op admissionv1.Operation, kind string, obj, old any) []byte {
	t.Helper()
	group := "apps"
	if kind == "Job" || kind == "CronJob" {
		group = "batch"
	}
	req := map[string]any{
		"uid": "u-1", "kind": map[string]string{"group": group, "version": "v1", "kind": kind},
		"resource":  map[string]string{"group": group, "version": "v1", "resource": strings.ToLower(kind) + "s"},
		"namespace": "ns", "operation": op, "object": obj,
	}
	if old != nil {
		req["oldObject"] = old
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// workload is a selected pod template inside a Deployment-shaped (or, with jobTemplate, a
// CronJob-shaped) object; owner adds an ownerReference with the given controller flag.
type workload struct {
	kind    string
	ann     map[string]string
	image   string
	env     string
	owner   *bool
	cronJob bool
	// replicas (0: 1) and strategy ("": Recreate) around the template.
	replicas int
	strategy string
}

func (w workload) object() map[string]any {
	image := w.image
	if image == "" {
		image = "prom/pushgateway:v1"
	}
	// Persisting to a claim under Recreate: no data-risk warning (TestWorkloadValidatorRisks
	// covers those), so the cases here see the annotation checks alone.
	c := map[string]any{"name": "pushgateway", "image": image, "args": []string{"--persistence.file=/data/pg"},
		"volumeMounts": []map[string]string{{"name": "data", "mountPath": "/data"}}}
	if w.env != "" {
		c["env"] = []map[string]string{{"name": "X", "value": w.env}}
	}
	tpl := map[string]any{
		"metadata": map[string]any{"labels": map[string]string{annotations.LabelAppName: "prometheus-pushgateway"}, "annotations": w.ann},
		"spec": map[string]any{"containers": []any{c},
			"volumes": []map[string]any{{"name": "data", "persistentVolumeClaim": map[string]string{"claimName": "pgw"}}}},
	}
	meta := map[string]any{"name": "pgw"}
	if w.owner != nil {
		meta["ownerReferences"] = []map[string]any{{"apiVersion": "apps/v1", "kind": "Deployment", "name": "pgw", "uid": "x", "controller": *w.owner}}
	}
	replicas := 1
	if w.replicas != 0 {
		replicas = w.replicas
	}
	strategy := "Recreate"
	if w.strategy != "" {
		strategy = w.strategy
	}
	spec := map[string]any{"replicas": replicas, "strategy": map[string]string{"type": strategy}, "template": tpl}
	if w.cronJob {
		spec = map[string]any{"schedule": "* * * * *", "jobTemplate": map[string]any{"spec": map[string]any{"template": tpl}}}
	}
	return map[string]any{"kind": w.kind, "metadata": meta, "spec": spec}
}

// The validator checks what people write and never blocks what controllers write from it:
// controller-owned objects and template-preserving updates pass under reject, and an update
// is denied only for problems it introduces.
func TestWorkloadValidatorControllersAndUpdates(t *testing.T) {
	yes, no := true, false
	bad := map[string]string{annotations.AnnotationShutdownBudget: "-5s"}
	worse := map[string]string{annotations.AnnotationShutdownBudget: "-5s", annotations.AnnotationPreStopSleep: "banana"}
	other := map[string]string{annotations.AnnotationShutdownBudget: "-6s"}
	good := map[string]string{annotations.AnnotationShutdownBudget: "20s"}
	for _, tc := range []struct {
		name     string
		op       admissionv1.Operation
		obj, old workload
		hasOld   bool
		// want: "allowed", "warned" (allowed with warnings) or "denied"; under warn and reject.
		warn, reject string
		msg          string // in the denial or the warnings under reject
		notMsg       string // not in the denial
	}{
		{name: "create invalid", op: admissionv1.Create, obj: workload{kind: "Deployment", ann: bad},
			warn: "warned", reject: "denied", msg: `"-5s"`},
		{name: "ReplicaSet of a Deployment", op: admissionv1.Create, obj: workload{kind: "ReplicaSet", ann: bad, owner: &yes},
			warn: "allowed", reject: "allowed"},
		{name: "ReplicaSet scaled by its Deployment", op: admissionv1.Update, obj: workload{kind: "ReplicaSet", ann: bad, owner: &yes},
			old: workload{kind: "ReplicaSet", ann: bad, owner: &yes}, hasOld: true, warn: "allowed", reject: "allowed"},
		{name: "Job of a CronJob", op: admissionv1.Create, obj: workload{kind: "Job", ann: bad, owner: &yes},
			warn: "allowed", reject: "allowed"},
		{name: "non-controller owner is checked", op: admissionv1.Create, obj: workload{kind: "Deployment", ann: bad, owner: &no},
			warn: "warned", reject: "denied", msg: `"-5s"`},
		{name: "update, template unchanged", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: bad},
			old: workload{kind: "Deployment", ann: bad}, hasOld: true, warn: "allowed", reject: "allowed"},
		{name: "update, unchecked template field changed", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: bad, env: "2"},
			old: workload{kind: "Deployment", ann: bad, env: "1"}, hasOld: true, warn: "allowed", reject: "allowed"},
		{name: "rollout keeping an existing problem", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: bad, image: "prom/pushgateway:v2"},
			old: workload{kind: "Deployment", ann: bad}, hasOld: true, warn: "warned", reject: "warned", msg: "kept from the stored object"},
		{name: "update introducing a problem", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: bad},
			old: workload{kind: "Deployment", ann: good}, hasOld: true, warn: "warned", reject: "denied", msg: `"-5s"`},
		{name: "update adding a second problem", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: worse},
			old: workload{kind: "Deployment", ann: bad}, hasOld: true, warn: "warned", reject: "denied", msg: `"banana"`, notMsg: `"-5s"`},
		{name: "update changing the bad value", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: other},
			old: workload{kind: "Deployment", ann: bad}, hasOld: true, warn: "warned", reject: "denied", msg: `"-6s"`},
		{name: "update fixing the problem", op: admissionv1.Update, obj: workload{kind: "Deployment", ann: good},
			old: workload{kind: "Deployment", ann: bad}, hasOld: true, warn: "allowed", reject: "allowed"},
		{name: "CronJob update, template unchanged", op: admissionv1.Update, obj: workload{kind: "CronJob", ann: bad, cronJob: true},
			old: workload{kind: "CronJob", ann: bad, cronJob: true}, hasOld: true, warn: "allowed", reject: "allowed"},
		{name: "CronJob update introducing a problem", op: admissionv1.Update, obj: workload{kind: "CronJob", ann: bad, cronJob: true},
			old: workload{kind: "CronJob", cronJob: true}, hasOld: true, warn: "warned", reject: "denied", msg: "in the CronJob's pod template"},
	} {
		for _, mode := range []string{policy.OnInvalidWarn, policy.OnInvalidReject} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				pol := policy.Default()
				pol.OnInvalid = mode
				want := tc.warn
				if mode == policy.OnInvalidReject {
					want = tc.reject
				}
				var old any
				if tc.hasOld {
					old = tc.old.object()
				}
				h := &WorkloadValidator{Policy: StaticPolicy{pol}, Log: logr.Discard()}
				_, rv := post(t, h, workloadReview(t, tc.op, tc.obj.kind, tc.obj.object(), old), "application/json")
				r := rv.Response
				got := "allowed"
				switch {
				case !r.Allowed:
					got = "denied"
				case len(r.Warnings) > 0:
					got = "warned"
				}
				if got != want {
					t.Fatalf("%s, want %s (warnings %q, result %+v)", got, want, r.Warnings, r.Result)
				}
				if mode != policy.OnInvalidReject || want == "allowed" {
					return
				}
				text := strings.Join(r.Warnings, " ")
				if r.Result != nil {
					text += r.Result.Message
				}
				if !strings.Contains(text, tc.msg) {
					t.Errorf("%q does not contain %q", text, tc.msg)
				}
				if tc.notMsg != "" && r.Result != nil && strings.Contains(r.Result.Message, tc.notMsg) {
					t.Errorf("denial %q names %s, which the stored object already had", r.Result.Message, tc.notMsg)
				}
			})
		}
	}
}

// What no pod spec saves is said at apply: the data-risk warnings of engine.Risks, for a
// create and for an update that changes the template, the replicas or the strategy.
func TestWorkloadValidatorRisks(t *testing.T) {
	noPersist := func(o map[string]any) map[string]any {
		tpl := o["spec"].(map[string]any)["template"].(map[string]any)
		tpl["spec"] = map[string]any{"containers": []any{map[string]any{"name": "pushgateway", "image": "prom/pushgateway:v1"}}}
		return o
	}
	for _, tc := range []struct {
		name     string
		op       admissionv1.Operation
		obj, old map[string]any
		// want are the warnings' risk words, in order (empty: no warning).
		want []string
	}{
		{"recreate on a claim: nothing (the crash bound is information, not a warning)", admissionv1.Create,
			workload{kind: "Deployment"}.object(), nil, nil},
		{"rolling update on a claim", admissionv1.Create,
			workload{kind: "Deployment", strategy: "RollingUpdate"}.object(), nil, []string{"last writer wins"}},
		{"no persistence", admissionv1.Create,
			noPersist(workload{kind: "Deployment"}.object()), nil, []string{"without --persistence.file"}},
		{"two replicas, rolling update", admissionv1.Create,
			workload{kind: "Deployment", replicas: 2, strategy: "RollingUpdate"}.object(), nil, []string{"replicas: 2", "last writer wins"}},
		{"update changing the strategy alone", admissionv1.Update,
			workload{kind: "Deployment", strategy: "RollingUpdate"}.object(), workload{kind: "Deployment"}.object(), []string{"last writer wins"}},
		{"update changing the replicas alone", admissionv1.Update,
			workload{kind: "Deployment", replicas: 3}.object(), workload{kind: "Deployment"}.object(), []string{"replicas: 3"}},
		{"update changing nothing checked: not said again", admissionv1.Update,
			workload{kind: "Deployment", strategy: "RollingUpdate"}.object(), workload{kind: "Deployment", strategy: "RollingUpdate"}.object(), nil},
		{"a Job's Pushgateway is a batch run", admissionv1.Create,
			noPersist(workload{kind: "Job"}.object()), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &WorkloadValidator{Policy: StaticPolicy{policy.Default()}, Log: logr.Discard()}
			var old any
			if tc.old != nil {
				old = tc.old
			}
			_, rv := post(t, h, workloadReview(t, tc.op, tc.obj["kind"].(string), tc.obj, old), "application/json")
			r := rv.Response
			if !r.Allowed {
				t.Fatalf("denied: %+v", r.Result)
			}
			if len(r.Warnings) != len(tc.want) {
				t.Fatalf("%d warnings, want %d: %q", len(r.Warnings), len(tc.want), r.Warnings)
			}
			for i, w := range tc.want {
				if !strings.Contains(r.Warnings[i], w) || !strings.HasPrefix(r.Warnings[i], "pushgateway-lifecycle: "+strings.ToLower(tc.obj["kind"].(string))+"/pgw: ") {
					t.Errorf("warning %d does not name the object and say %q: %s", i, w, r.Warnings[i])
				}
			}
		})
	}
}
