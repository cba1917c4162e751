package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// corpus is a set of pods that exercise every patch shape: lifecycle absent, lifecycle with
// only postStart, preStop present (kept and replaced), grace absent and present, annotations
// absent, empty and present, several target containers, readinessProbes tuned and kept, plus
// the upstream chart's pod.
func corpus(t testing.TB) map[string]*corev1.Pod {
	t.Helper()
	base := func() *corev1.Pod {
		return &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{annotations.LabelAppName: "pushgateway"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "pushgateway", Image: "prom/pushgateway", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}},
			}},
		}
	}
	g := int64(30)
	c := map[string]*corev1.Pod{}
	c["plain"] = base()
	p := base()
	p.Spec.TerminationGracePeriodSeconds = &g
	p.Annotations = map[string]string{}
	c["grace set, empty annotations"] = p
	p = base()
	p.Annotations = map[string]string{"a/b~c": "x", annotations.AnnotationPreStopSleep: "60"}
	c["annotations with escapes"] = p
	p = base()
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}}
	c["postStart only"] = p
	p = base()
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "3"}}}}
	c["existing preStop"] = p
	p = base()
	p.Spec.Containers = append([]corev1.Container{{Name: "side", Image: "x"}}, p.Spec.Containers...)
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "other", Image: "y/pushgateway:1"})
	p.Annotations = map[string]string{annotations.AnnotationPreStopAction: "exec"}
	c["three containers, two targets, exec"] = p
	p = base()
	p.Annotations = map[string]string{annotations.AnnotationInject: "false"}
	c["opted out"] = p
	p = base()
	p.Annotations = map[string]string{annotations.AnnotationPreStopSleep: "bogus"}
	c["invalid setting"] = p
	p = base()
	p.Labels = map[string]string{"app": "web"}
	c["not selected"] = p
	c["upstream chart pod"] = upstreamPod(t)
	// A sidecar's sleep above the grace annotation: the grace period stays above the sleep.
	always := corev1.ContainerRestartPolicyAlways
	sleep60 := &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 60}}}
	g90 := int64(90)
	p = base()
	p.Spec.TerminationGracePeriodSeconds = &g90
	p.Annotations = map[string]string{annotations.AnnotationTerminationGracePeriod: "40s"}
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}, {Name: "proxy", Image: "envoy", RestartPolicy: &always, Lifecycle: sleep60}}
	c["native sidecar sleeps above the grace annotation"] = p
	p = base()
	p.Spec.TerminationGracePeriodSeconds = &g90
	p.Annotations = map[string]string{annotations.AnnotationTerminationGracePeriod: "40s"}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy", Lifecycle: sleep60})
	c["sidecar sleeps above the grace annotation"] = p
	// 64 bytes under the annotations' size limit: no room for the status annotation.
	p = base()
	p.Annotations = map[string]string{"example.com/config": strings.Repeat("x", engine.TotalAnnotationSizeLimit-len("example.com/config")-64)}
	c["annotations near the size limit"] = p
	// What decides the handoff: shared volumes, the owner, the node name, other gates.
	yes := true
	p = base()
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "pgw-1", UID: "u", Controller: &yes}}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pgw"}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/pg"}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/quota"}}
	c["claim and hostPath, ReplicaSet, another gate"] = p
	p = base()
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "pgw", UID: "u", Controller: &yes}}
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-pgw-0"}}}}
	c["claim, StatefulSet"] = p
	p = base()
	p.Spec.NodeName = "node-a"
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pgw"}}}}
	c["claim, node named"] = p
	// Readiness tuning: a probe on /-/ready with both timings to lower, one with only the
	// period absent (added, not replaced), and probes that stay (another path, tcpSocket, a
	// liveness probe on /-/ready, a non-target's probe).
	ready := func(delay, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: engine.ReadinessPath, Port: intstr.FromInt32(9091), Scheme: corev1.URISchemeHTTP}},
			InitialDelaySeconds: delay, PeriodSeconds: period, TimeoutSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
	}
	p = base()
	p.Spec.Containers[0].ReadinessProbe = ready(10, 10)
	p.Spec.Containers[0].LivenessProbe = ready(10, 10)
	c["readinessProbe 10/10, livenessProbe on /-/ready"] = p
	p = base()
	p.Spec.Containers[0].ReadinessProbe = ready(7, 0)
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "x", ReadinessProbe: ready(10, 10)})
	c["readinessProbe without period, non-target probe"] = p
	p = base()
	p.Spec.Containers[0].ReadinessProbe = ready(10, 10)
	p.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/metrics"
	c["readinessProbe on /metrics"] = p
	p = base()
	p.Spec.Containers[0].ReadinessProbe = ready(10, 10)
	p.Annotations = map[string]string{annotations.AnnotationReadiness: annotations.ReadinessKeep}
	c["readinessProbe 10/10, readiness keep"] = p
	p = base()
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9091)}}, InitialDelaySeconds: 10, PeriodSeconds: 10}
	c["readinessProbe tcpSocket"] = p
	return c
}

// upstreamPod is the pod template of the upstream chart's Deployment, from the repository's test/testdata.
func upstreamPod(t testing.TB) *corev1.Pod {
	t.Helper()
	data, err := fixtures.ReadUpstreamChart("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		if !strings.Contains(doc, "kind: Deployment") {
			continue
		}
		var d struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		g := int64(30)
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
		p.Namespace = "monitoring"
		p.Spec.TerminationGracePeriodSeconds = &g
		return p
	}
	t.Fatal("no Deployment in the fixture")
	return nil
}

func policies() map[string]*policy.Policy {
	replace := policy.Default()
	replace.ExistingPreStop = policy.ExistingPreStopReplace
	return map[string]*policy.Policy{"default": policy.Default(), "replace": replace}
}

// TestPatchEquivalence proves BuildPatch (our direct operations) against the generic way,
// admission.PatchResponseFromRaw (a diff of the raw request and the re-encoded mutated pod):
// applied to the request, both yield the same pod.
func TestPatchEquivalence(t *testing.T) {
	for pname, pol := range policies() {
		for name, pod := range corpus(t) {
			t.Run(pname+"/"+name, func(t *testing.T) {
				raw, err := json.Marshal(pod)
				if err != nil {
					t.Fatal(err)
				}
				// Decide on the pod as the request carries it (an empty map is omitted in JSON).
				var decoded corev1.Pod
				if err := json.Unmarshal(raw, &decoded); err != nil {
					t.Fatal(err)
				}
				mutated, d := engine.Mutate(&decoded, pod.Namespace, pol)
				mraw, err := json.Marshal(mutated)
				if err != nil {
					t.Fatal(err)
				}
				generic := admission.PatchResponseFromRaw(raw, mraw)
				genericPatch, err := json.Marshal(generic.Patches)
				if err != nil {
					t.Fatal(err)
				}
				direct, err := engine.BuildPatch(&d)
				if err != nil {
					t.Fatal(err)
				}
				if len(direct) == 0 {
					if len(generic.Patches) != 0 {
						t.Fatalf("direct patch is empty, generic has %s", genericPatch)
					}
					return
				}
				a := applyPatch(t, raw, genericPatch)
				b := applyPatch(t, raw, direct)
				if !apiequality.Semantic.DeepEqual(a, b) {
					t.Errorf("patches differ in effect\ngeneric: %s\ndirect:  %s", genericPatch, direct)
				}
				if !apiequality.Semantic.DeepEqual(b, mutated) {
					t.Errorf("direct patch does not yield the engine's pod")
				}
			})
		}
	}
}

func applyPatch(t *testing.T, raw, patch []byte) *corev1.Pod {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch %s: %v", patch, err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch %s: %v", patch, err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

// TestPodViewEquivalence proves that deciding on the sparse engine.PodView equals deciding on the
// fully decoded pod, for every pod of the corpus and both policies.
func TestPodViewEquivalence(t *testing.T) {
	for pname, pol := range policies() {
		for name, pod := range corpus(t) {
			raw, _ := json.Marshal(pod)
			var full corev1.Pod
			var view engine.PodView
			if err := json.Unmarshal(raw, &full); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &view); err != nil {
				t.Fatal(err)
			}
			a := engine.Decide(&full, "ns", pol)
			b := engine.Decide(view.Pod(), "ns", pol)
			pa, _ := engine.BuildPatch(&a)
			pb, _ := engine.BuildPatch(&b)
			if a.Outcome != b.Outcome || a.Status != b.Status || !bytes.Equal(pa, pb) || fmt.Sprint(a.Warnings) != fmt.Sprint(b.Warnings) {
				t.Errorf("%s/%s: full %s %q %s; view %s %q %s", pname, name, a.Outcome, a.Status, pa, b.Outcome, b.Status, pb)
			}
			if !slices.Equal(a.HandoffKeys, b.HandoffKeys) {
				t.Errorf("%s/%s: handoff keys: full %q, view %q", pname, name, a.HandoffKeys, b.HandoffKeys)
			}
			// Gated on both views (as if a predecessor held every key): the same patch.
			holders := []engine.Holder{{Name: "old", Volume: "pvc/pgw"}}
			engine.Gate(&a, &full, holders)
			engine.Gate(&b, view.Pod(), holders)
			pa, _ = engine.BuildPatch(&a)
			pb, _ = engine.BuildPatch(&b)
			if a.Gate != b.Gate || !bytes.Equal(pa, pb) {
				t.Errorf("%s/%s gated: full %v %s; view %v %s", pname, name, a.Gate, pa, b.Gate, pb)
			}
		}
	}
}

func reviewBody(t testing.TB, op admissionv1.Operation, kind string, obj any) []byte {
	t.Helper()
	req := map[string]any{
		"uid": "u-1", "kind": map[string]string{"group": "", "version": "v1", "kind": kind},
		"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
		"namespace": "ns", "operation": op,
	}
	if obj != nil {
		req["object"] = obj
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t testing.TB, h http.Handler, body []byte, contentType string) (int, admissionv1.AdmissionReview) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, PathMutatePods, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, w.Body.String())
	}
	if rv.Response == nil {
		t.Fatalf("review without response: %s", w.Body.String())
	}
	return w.Code, rv
}

func TestPodMutatorRequests(t *testing.T) {
	pod := corpus(t)["plain"]
	deny := policy.Default()
	deny.OnInvalid = policy.OnInvalidReject
	bad := corpus(t)["invalid setting"]
	for _, tc := range []struct {
		name        string
		pol         *policy.Policy
		body        []byte
		contentType string
		allowed     bool
		code        int32 // result code; 0: no result
		msg         string
		patched     bool
	}{
		{name: "pod create is patched", body: reviewBody(t, admissionv1.Create, "Pod", pod), allowed: true, patched: true},
		{name: "update passes untouched", body: reviewBody(t, admissionv1.Update, "Pod", pod), allowed: true},
		{name: "not a pod request", body: reviewBody(t, admissionv1.Create, "Secret", map[string]any{"kind": "Secret"}), allowed: true, code: 200, msg: "only mutates pods"},
		{name: "object of another kind", body: reviewBody(t, admissionv1.Create, "Pod", map[string]any{"kind": "Deployment"}), code: 400, msg: "request.object is a \"Deployment\", expected a Pod"},
		{name: "object missing", body: reviewBody(t, admissionv1.Create, "Pod", nil), code: 400, msg: "request.object is missing"},
		{name: "invalid JSON", body: []byte(`{"apiVersion":`), code: 400, msg: "decoding the AdmissionReview"},
		{name: "not a review", body: []byte(`{"apiVersion":"v1","kind":"Pod"}`), code: 400, msg: "must be an AdmissionReview"},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), code: 400, msg: "has no request"},
		{name: "wrong content type", body: reviewBody(t, admissionv1.Create, "Pod", pod), contentType: "text/plain", code: 415, msg: `Content-Type "text/plain"`},
		{name: "undecodable pod", body: reviewBody(t, admissionv1.Create, "Pod", map[string]any{"spec": map[string]any{"containers": "x"}}), code: 400, msg: `cannot decode a JSON string at "/request/object/spec/containers" (expected an array)`},
		{name: "invalid setting warns", body: reviewBody(t, admissionv1.Create, "Pod", bad), allowed: true, patched: true},
		{name: "invalid setting denied with reject", pol: deny, body: reviewBody(t, admissionv1.Create, "Pod", bad), code: 403, msg: `pre-stop-sleep]: Invalid value: "bogus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = policy.Default()
			}
			h := &PodMutator{Policy: StaticPolicy{pol}, Log: logr.Discard()}
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			status, rv := post(t, h, tc.body, ct)
			if status != http.StatusOK {
				t.Errorf("HTTP status %d, want 200 (errors travel inside the review)", status)
			}
			r := rv.Response
			if r.Allowed != tc.allowed {
				t.Errorf("allowed = %v, want %v (%+v)", r.Allowed, tc.allowed, r.Result)
			}
			if tc.code != 0 {
				if r.Result == nil || r.Result.Code != tc.code || !strings.Contains(r.Result.Message, tc.msg) {
					t.Errorf("result = %+v, want code %d and a message containing %q", r.Result, tc.code, tc.msg)
				}
			}
			if (len(r.Patch) > 0) != tc.patched {
				t.Errorf("patch = %s, want patched=%v", r.Patch, tc.patched)
			}
			if tc.name == "invalid setting warns" && (len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], `"bogus"`)) {
				t.Errorf("warnings = %q, want one naming the bad value", r.Warnings)
			}
		})
	}
}

// TestPodMutatorAnnotationsNearLimit: a pod whose annotations leave no room for the status
// annotation gets its hook and grace period without it, and a warning saying so; the patched
// pod stays within the API server's limit (review of issue 26: 262183 > 262144 bytes).
func TestPodMutatorAnnotationsNearLimit(t *testing.T) {
	h := &PodMutator{Policy: StaticPolicy{policy.Default()}, Log: logr.Discard()}
	const name = "annotations near the size limit"
	pod := corpus(t)[name]
	_, rv := post(t, h, reviewBody(t, admissionv1.Create, "Pod", pod), "application/json")
	r := rv.Response
	if !r.Allowed || len(r.Patch) == 0 {
		t.Fatalf("%s: allowed %v, patch %s: want the hook patched in", name, r.Allowed, r.Patch)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	out := applyPatch(t, raw, r.Patch)
	if err := apivalidation.ValidateAnnotationsSize(out.Annotations); err != nil {
		t.Errorf("%s: the patched pod is invalid: %v", name, err)
	}
	if out.Spec.Containers[0].Lifecycle == nil || out.Spec.Containers[0].Lifecycle.PreStop == nil {
		t.Errorf("%s: no preStop hook in %s", name, r.Patch)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "status annotation "+annotations.AnnotationStatus+" left out") {
		t.Errorf("%s: warnings = %q, want one about the status annotation", name, r.Warnings)
	}
}

func TestPodMutatorTooLarge(t *testing.T) {
	h := &PodMutator{Policy: StaticPolicy{policy.Default()}, Log: logr.Discard()}
	body := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"x":"`), bytes.Repeat([]byte("a"), MaxRequestBytes)...)
	_, rv := post(t, h, body, "application/json")
	if rv.Response.Allowed || rv.Response.Result.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("response = %+v, want 413", rv.Response.Result)
	}
}

func TestWorkloadValidator(t *testing.T) {
	dep := func(ann map[string]string) map[string]any {
		return map[string]any{"kind": "Deployment", "metadata": map[string]any{"name": "pgw"},
			"spec": map[string]any{"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]string{annotations.LabelAppName: "prometheus-pushgateway"}, "annotations": ann},
				"spec": map[string]any{"containers": []map[string]any{{"name": "pushgateway", "image": "prom/pushgateway",
					"args": []string{"--persistence.file=/data/pg"}, "volumeMounts": []map[string]string{{"name": "data", "mountPath": "/data"}}}},
					"volumes": []map[string]any{{"name": "data", "persistentVolumeClaim": map[string]string{"claimName": "pgw"}}}},
			}, "strategy": map[string]string{"type": "Recreate"}}}
	}
	cron := map[string]any{"kind": "CronJob", "spec": map[string]any{"jobTemplate": map[string]any{"spec": dep(map[string]string{annotations.AnnotationShutdownBudget: "-1"})["spec"]}}}
	deny := policy.Default()
	deny.OnInvalid = policy.OnInvalidReject
	for _, tc := range []struct {
		name    string
		pol     *policy.Policy
		kind    string
		obj     any
		allowed bool
		warns   int
		msg     string
	}{
		{name: "valid", kind: "Deployment", obj: dep(nil), allowed: true},
		{name: "bad annotation warns", kind: "Deployment", obj: dep(map[string]string{annotations.AnnotationPreStopSleep: "1h"}), allowed: true, warns: 1, msg: `"1h"`},
		{name: "bad annotation denied", pol: deny, kind: "Deployment", obj: dep(map[string]string{annotations.AnnotationPreStopSleep: "1h"}), msg: "in the Deployment's pod template"},
		{name: "cronjob template", kind: "CronJob", obj: cron, allowed: true, warns: 1, msg: `"-1"`},
		{name: "other kinds pass", kind: "ConfigMap", obj: map[string]any{"kind": "ConfigMap"}, allowed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = policy.Default()
			}
			h := &WorkloadValidator{Policy: StaticPolicy{pol}, Log: logr.Discard()}
			body := reviewBody(t, admissionv1.Create, tc.kind, tc.obj)
			body = bytes.Replace(body, []byte(`"group":""`), []byte(`"group":"apps"`), 1)
			_, rv := post(t, h, body, "application/json")
			r := rv.Response
			if r.Allowed != tc.allowed || len(r.Warnings) != tc.warns {
				t.Fatalf("allowed=%v warnings=%q result=%+v; want allowed=%v and %d warnings", r.Allowed, r.Warnings, r.Result, tc.allowed, tc.warns)
			}
			text := strings.Join(r.Warnings, " ")
			if r.Result != nil {
				text += r.Result.Message
			}
			if !strings.Contains(text, tc.msg) {
				t.Errorf("%q does not contain %q", text, tc.msg)
			}
		})
	}
}
