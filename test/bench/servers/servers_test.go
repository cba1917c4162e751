package servers

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

func review(t *testing.T, pod *corev1.Pod) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("u-1"), Operation: admissionv1.Create, Namespace: "ns",
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serve(t *testing.T, h interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request)
}, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/mutate-v1-pod", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &rv); err != nil || rv.Response == nil {
		t.Fatalf("bad response %q: %v", rec.Body.String(), err)
	}
	return rv.Response
}

func pgPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app.kubernetes.io/name": "prometheus-pushgateway"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}}}}
}

func TestConstantAnswerEchoesTheUID(t *testing.T) {
	r := serve(t, ConstantAnswer(), review(t, pgPod()))
	if r.UID != "u-1" || !r.Allowed || len(r.Patch) != 0 {
		t.Fatalf("response = %+v, want allowed for uid u-1 and no patch", r)
	}
}

func TestConstantPatchAndDefaulterMutate(t *testing.T) {
	cp, err := ConstantPatch(pgPod(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]interface {
		ServeHTTP(w http.ResponseWriter, r *http.Request)
	}{"constant-patch": cp, "defaulter": Defaulter(policy.Default())} {
		r := serve(t, h, review(t, pgPod()))
		if r.UID != "u-1" || !r.Allowed || !bytes.Contains(r.Patch, []byte(`"preStop":{"sleep":{"seconds":30}}`)) || !bytes.Contains(r.Patch, []byte(`terminationGracePeriodSeconds`)) {
			t.Errorf("%s: response = %+v (patch %s), want the preStop sleep and the grace period", name, r, r.Patch)
		}
	}
}

// The constant-patch floor answers the bytes the webhook answers for the same review: the same
// patch, the same fields in the same order, only the uid taken from the request.
func TestConstantPatchIsTheWebhooksAnswer(t *testing.T) {
	pod, err := podgen.Realistic()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ConstantPatch(pod, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	wh := &webhook.PodMutator{Policy: webhook.StaticPolicy{P: policy.Default()}, Log: logr.Discard()}
	for _, uid := range []string{"3f0e5c1a-7b2d-4c9e-8f1a-6d5b4c3a2e10", "u-2"} {
		body := podgen.Review(uid, raw)
		answers := map[string][]byte{}
		for name, h := range map[string]http.Handler{"webhook": wh, "constant-patch": cp} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/mutate-v1-pod", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			answers[name] = rec.Body.Bytes()
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: Content-Type %q", name, ct)
			}
		}
		if !bytes.Equal(answers["webhook"], answers["constant-patch"]) {
			t.Errorf("uid %s: constant-patch answers\n%s\nthe webhook\n%s", uid, answers["constant-patch"], answers["webhook"])
		}
		if !bytes.Contains(answers["constant-patch"], []byte(`"uid":"`+uid+`"`)) {
			t.Errorf("uid %s not echoed: %s", uid, answers["constant-patch"])
		}
	}
}
