// Package servers holds the benchmark's reference webhooks, test code only: the shipped
// binary carries none of them. cmd/benchserver serves each on pkg/server's own TLS stack
// (controller-runtime's webhook server, the same TLS options, probes and drain), so that the
// only difference from `pushgateway-lifecycle serve` is the handler.
package servers

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
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

// ConstantPatch answers every review with the patch the engine computes for pod, computed
// once: what any mutating webhook that returns this patch costs the API server at least.
func ConstantPatch(pod *corev1.Pod, pol *policy.Policy) (http.Handler, error) {
	d := engine.Decide(pod, pod.Namespace, pol)
	patch, err := webhook.BuildPatch(&d)
	if err != nil {
		return nil, err
	}
	suffix := `","allowed":true,"patchType":"JSONPatch","patch":"` + base64.StdEncoding.EncodeToString(patch) + `"}}` + "\n"
	return constant{suffix: []byte(suffix)}, nil
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
