// Package servers holds the benchmark's reference webhooks, test code only: the shipped
// binary carries none of them. cmd/benchserver serves each on pkg/server's own TLS stack
// (controller-runtime's webhook server, the same TLS options, probes and drain), so that the
// only difference from `pushgateway-lifecycle serve` is the handler.
package servers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

var (
	uidKey      = []byte(`"uid":"`)
	replyPrefix = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"`)
	allowedEnd  = []byte(`","allowed":true}}` + "\n")
	bodyPool    = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// constant answers every review allowed, with suffix after the uid, without decoding JSON.
// It reads the body (as any handler must, to keep the connection reusable); the request's
// uid, which the API server requires back, is found by a byte search: the API server
// encodes request.uid as the request's first field, long before the object.
type constant struct{ suffix []byte }

func (h constant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := bodyPool.Get().(*bytes.Buffer)
	defer bodyPool.Put(buf)
	buf.Reset()
	_, _ = buf.ReadFrom(io.LimitReader(r.Body, webhook.MaxRequestBytes+1))
	body := buf.Bytes()
	var uid []byte
	if i := bytes.Index(body, uidKey); i >= 0 {
		rest := body[i+len(uidKey):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 && j <= 128 {
			uid = rest[:j]
		}
	}
	w.Header().Set("Content-Type", "application/json")
	out := make([]byte, 0, len(replyPrefix)+len(uid)+len(h.suffix))
	out = append(append(append(out, replyPrefix...), uid...), h.suffix...)
	_, _ = w.Write(out)
}

// ConstantAnswer is the floor of any handler on this server: allowed, no patch, no decoding.
func ConstantAnswer() http.Handler { return constant{suffix: allowedEnd} }

// ConstantPatch answers every review with the bytes the webhook's own handler
// (webhook.PodMutator) answers for pod, computed once at start with only the uid put in per
// request: the same patch (ops, order, encoding) in the same AdmissionReview field for field,
// for the pod as the API server sends it. pod must be that pod (defaulted, after the built-in
// admission plugins), not the bare template a client posts: a patch computed from the bare
// pod "adds" what the API server has defaulted and may not apply to another pod at all. What
// is left of the webhook's work per request is reading the body and writing the answer: a
// lower bound for any mutating webhook that returns this patch.
func ConstantPatch(pod *corev1.Pod, pol *policy.Policy) (http.Handler, error) {
	const placeholder = "00000000-0000-4000-8000-00000000c0de"
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: placeholder, Operation: admissionv1.Create, Namespace: pod.Namespace,
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, webhook.PathMutatePods, bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	(&webhook.PodMutator{Policy: webhook.StaticPolicy{P: pol}, Log: logr.Discard()}).ServeHTTP(rec, req)
	out := rec.Body.Bytes()
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rv); err != nil || rv.Response == nil {
		return nil, fmt.Errorf("constant-patch: the webhook's answer %q: %w", out, err)
	}
	if len(rv.Response.Patch) == 0 || !rv.Response.Allowed {
		return nil, fmt.Errorf("constant-patch: the webhook does not mutate this pod (answer %s)", out)
	}
	prefix := append(append([]byte(nil), replyPrefix...), placeholder...)
	if !bytes.HasPrefix(out, prefix) || bytes.Count(out, []byte(placeholder)) != 1 {
		return nil, fmt.Errorf("constant-patch: the webhook's answer does not start with the uid: %s", out)
	}
	return constant{suffix: append([]byte(nil), out[len(prefix):]...)}, nil
}

// podDefaulter is the plain controller-runtime way to write the same mutation: decode the
// whole pod, run the engine, let admission.WithDefaulter diff the re-encoded pod into a patch.
type podDefaulter struct{ pol *policy.Policy }

func (d podDefaulter) Default(ctx context.Context, pod *corev1.Pod) error {
	ns := pod.Namespace
	if req, err := admission.RequestFromContext(ctx); err == nil {
		ns = req.Namespace
	}
	dec := engine.Decide(pod, ns, d.pol)
	engine.Apply(pod, &dec)
	return nil
}

// Defaulter is admission.WithDefaulter[*corev1.Pod] doing the engine's mutation.
func Defaulter(pol *policy.Policy) http.Handler {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	return admission.WithDefaulter[*corev1.Pod](scheme, podDefaulter{pol: pol})
}
