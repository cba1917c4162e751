package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// fuzzFixtureObjects returns the upstream chart's Deployments and StatefulSets (JSON) and
// their pod templates turned into Pods, read from test/testdata/upstream-chart.
func fuzzFixtureObjects(f *testing.F) (workloads, pods [][]byte) {
	files, err := fixtures.UpstreamChart()
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj == nil {
				continue
			}
			spec, _ := obj["spec"].(map[string]any)
			tpl, _ := spec["template"].(map[string]any)
			if tpl == nil {
				continue
			}
			w, _ := json.Marshal(obj)
			workloads = append(workloads, w)
			md, _ := tpl["metadata"].(map[string]any)
			if md == nil {
				md = map[string]any{}
			}
			md["generateName"] = "pgw-"
			md["namespace"] = "monitoring"
			p, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": tpl["spec"]})
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		f.Fatal("no pod templates in the fixtures")
	}
	return workloads, pods
}

// fuzzEnvelope wraps an object in an AdmissionReview the API server would send.
func fuzzEnvelope(kind, group, version, op string, object []byte) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"fuzz-uid",`+
		`"kind":{"group":%q,"version":%q,"kind":%q},"resource":{"group":%q,"version":%q,"resource":"x"},`+
		`"namespace":"monitoring","operation":%q,"object":%s}}`, group, version, kind, group, version, op, object))
}

// hostileObjects are pod-shaped values that broke or slowed admission handlers elsewhere.
func hostileObjects(pod []byte) [][]byte {
	withAnn := func(k, v string) []byte {
		var m map[string]any
		_ = json.Unmarshal(pod, &m)
		md := m["metadata"].(map[string]any)
		ann, _ := md["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
		}
		ann["pushgateway-lifecycle.io/"+k] = v
		md["annotations"] = ann
		out, _ := json.Marshal(m)
		return out
	}
	return [][]byte{
		withAnn("pre-stop-sleep", "9999999999999999999s"),
		withAnn("pre-stop-sleep", "-5s"),
		withAnn("shutdown-budget", "1.5s"),
		withAnn("termination-grace-period", ""),
		withAnn("containers", "nothing-here"),
		withAnn("inject", "maybe"),
		withAnn("pre-stop-action", "ü\x00\x1b"),
		[]byte(`{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}},"spec":{"containers":[{"name":"a"},{"name":"a"}]}}`),
		[]byte(`{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}},"spec":{"terminationGracePeriodSeconds":-1,"containers":[{"name":"pushgateway","lifecycle":{"preStop":{"sleep":{"seconds":9223372036854775807}}}}]}}`),
		[]byte(`{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}},"spec":{"terminationGracePeriodSeconds":9223372036854775807,"containers":[{"name":"pushgateway"}]}}`),
		[]byte(`{"kind":"Secret","data":{"k":"c2VjcmV0"}}`),
		[]byte(`{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"},"annotations":{"pushgateway-lifecycle.io/containers":"~1/x"}},"spec":{"containers":[{"name":"~1/x"}]}}`),
		[]byte(`null`), []byte(`[]`), []byte(`"pod"`), []byte(`{}`),
	}
}

// checkReview asserts what the API server needs from every answer: HTTP 200, a decodable
// AdmissionReview with a response, a 4xx code whenever the request is refused (never a 5xx:
// every input here is a client's), and, when there is a patch, one that applies to the object.
func checkReview(t *testing.T, h http.Handler, body []byte, object []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d, want 200 (errors go inside the review)", rec.Code)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &rv); err != nil {
		t.Fatalf("answer is not an AdmissionReview: %v\n%.500s", err, rec.Body.String())
	}
	if rv.Kind != "AdmissionReview" || rv.Response == nil {
		t.Fatalf("answer has no response: %.500s", rec.Body.String())
	}
	r := rv.Response
	if !r.Allowed {
		if r.Result == nil || r.Result.Code < 400 || r.Result.Code >= 500 {
			t.Fatalf("refused without a 4xx code: %+v", r.Result)
		}
		if r.Result.Message == "" {
			t.Fatal("refused without a message")
		}
	}
	if r.Result != nil && len(r.Result.Message) > 16<<10 {
		t.Fatalf("message of %d bytes: input echoed unbounded", len(r.Result.Message))
	}
	for _, w := range r.Warnings {
		if len(w) > 4<<10 {
			t.Fatalf("warning of %d bytes: input echoed unbounded", len(w))
		}
	}
	if len(r.Patch) > 0 {
		if object == nil {
			t.Fatalf("patch without an object: %s", r.Patch)
		}
		checkPatch(t, object, r.Patch)
	}
	return r
}

// checkPatch applies the patch as the API server would and checks the one rule whose breach
// turns into a failed pod creation: no preStop sleep longer than the grace period.
func checkPatch(t *testing.T, object, patch []byte) {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, patch)
	}
	out, err := p.Apply(object)
	if err != nil {
		t.Fatalf("patch does not apply to the object: %v\npatch: %s\nobject: %.2000s", err, patch, object)
	}
	var before, after corev1.Pod
	if json.Unmarshal(object, &before) != nil || json.Unmarshal(out, &after) != nil {
		// Not a Pod to begin with (the API server would never send it): the patch applying
		// is all we can ask.
		return
	}
	// Only a pod that was valid in this respect must stay valid: the API server refuses the
	// others before they reach us.
	if sleepWithinGrace(&before) == "" {
		if problem := sleepWithinGrace(&after); problem != "" {
			t.Fatalf("the patch makes a valid pod invalid: %s\npatch: %s\nobject: %.2000s", problem, patch, object)
		}
	}
}

// sleepWithinGrace describes the first container whose preStop sleep exceeds the grace period.
func sleepWithinGrace(pod *corev1.Pod) string {
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if grace < 0 {
		return fmt.Sprintf("terminationGracePeriodSeconds %d < 0", grace)
	}
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil && c.Lifecycle.PreStop.Sleep.Seconds > grace {
			return fmt.Sprintf("container %q: preStop sleep %ds > terminationGracePeriodSeconds %d (the API server rejects this pod)",
				c.Name, c.Lifecycle.PreStop.Sleep.Seconds, grace)
		}
	}
	return ""
}

func fuzzPolicies() []*policy.Policy {
	warn := policy.Default()
	reject := policy.Default()
	reject.OnInvalid = policy.OnInvalidReject
	reject.ExistingPreStop = policy.ExistingPreStopReplace
	return []*policy.Policy{warn, reject}
}

// FuzzPodMutatorBody fuzzes the whole request body: envelope and object.
func FuzzPodMutatorBody(f *testing.F) {
	_, pods := fuzzFixtureObjects(f)
	for _, p := range pods {
		f.Add(fuzzEnvelope("Pod", "", "v1", "CREATE", p))
		for _, h := range hostileObjects(p) {
			f.Add(fuzzEnvelope("Pod", "", "v1", "CREATE", h))
		}
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE"}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`))
	f.Add([]byte(`not json`))
	f.Add([]byte(``))
	pols := fuzzPolicies()
	f.Fuzz(func(t *testing.T, body []byte) {
		var env struct {
			Request *struct {
				Object json.RawMessage `json:"object"`
			} `json:"request"`
		}
		var object []byte
		if json.Unmarshal(body, &env) == nil && env.Request != nil {
			object = env.Request.Object
		}
		for _, pol := range pols {
			checkReview(t, &PodMutator{Policy: StaticPolicy{pol}, Log: logr.Discard()}, body, object)
		}
	})
}

// FuzzPodMutatorObject keeps the envelope valid so that the fuzzer spends its time on the pod.
func FuzzPodMutatorObject(f *testing.F) {
	_, pods := fuzzFixtureObjects(f)
	for _, p := range pods {
		f.Add(p)
		for _, h := range hostileObjects(p) {
			f.Add(h)
		}
	}
	pols := fuzzPolicies()
	f.Fuzz(func(t *testing.T, object []byte) {
		if !json.Valid(object) {
			return // FuzzPodMutatorBody covers undecodable bodies
		}
		body := fuzzEnvelope("Pod", "", "v1", "CREATE", object)
		for _, pol := range pols {
			r := checkReview(t, &PodMutator{Policy: StaticPolicy{pol}, Log: logr.Discard()}, body, object)
			if r.UID != "fuzz-uid" {
				t.Fatalf("response UID %q, want the request's", r.UID)
			}
		}
	})
}

// FuzzWorkloadValidator fuzzes the validating path with the fixtures' workloads.
func FuzzWorkloadValidator(f *testing.F) {
	workloads, pods := fuzzFixtureObjects(f)
	for _, w := range workloads {
		f.Add(fuzzEnvelope("Deployment", "apps", "v1", "CREATE", w))
		f.Add(fuzzEnvelope("CronJob", "batch", "v1", "UPDATE", []byte(`{"spec":{"jobTemplate":{"spec":{"template":`+string(pods[0])+`}}}}`)))
		for _, h := range hostileObjects(pods[0]) {
			f.Add(fuzzEnvelope("StatefulSet", "apps", "v1", "CREATE", []byte(`{"spec":{"template":`+string(h)+`}}`)))
		}
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Job"},"operation":"CREATE","object":{"spec":{"template":null}}}}`))
	// UPDATEs with the stored object, and a controller-owned object.
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Deployment"},"operation":"UPDATE",` +
		`"object":{"spec":{"template":{"metadata":{"labels":{"app.kubernetes.io/name":"pushgateway"},"annotations":{"pushgateway-lifecycle.io/shutdown-budget":"-1"}}}}},` +
		`"oldObject":{"spec":{"template":{"metadata":{"labels":{"app.kubernetes.io/name":"pushgateway"}}}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"CronJob"},"operation":"UPDATE",` +
		`"object":{"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}}}}}}},"oldObject":{"spec":null}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"ReplicaSet"},"operation":"UPDATE",` +
		`"object":{"metadata":{"ownerReferences":[{"controller":true},{"controller":null}]},"spec":{"template":{}}},"oldObject":{}}}`))
	pols := fuzzPolicies()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, pol := range pols {
			r := checkReview(t, &WorkloadValidator{Policy: StaticPolicy{pol}, Log: logr.Discard()}, body, nil)
			if len(r.Patch) > 0 {
				t.Fatal("a validating webhook must not patch")
			}
		}
	})
}
