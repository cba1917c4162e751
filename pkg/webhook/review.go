// Package webhook is the thin admission layer, the HTTP envelope only: it reads and bounds an
// AdmissionReview, hands the pod view to the pure engine (pkg/engine decides and builds the
// patch) and writes the answer. It is a plain http.Handler registered on controller-runtime's
// webhook server (which adds TLS, certificate reload and the controller_runtime_webhook_*
// metrics) instead of an admission.Handler, because the generic path decodes the review and
// then the whole pod a second time; here the review and the few pod fields the engine reads
// (engine.PodView) are decoded in one pass (see BenchmarkHandler).
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/go-logr/logr"
	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
)

// MaxRequestBytes is the largest AdmissionReview read, the same limit as controller-runtime's
// (the API server's own request limit is 3 MiB of object plus the review envelope).
const MaxRequestBytes = 7 * 1024 * 1024

// request is the part of admission.k8s.io/v1 AdmissionRequest the handlers read. Object is a
// type parameter so each handler decodes only the fields its engine call needs, in the same
// pass as the envelope.
type request[T any] struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   admissionv1.Operation       `json:"operation"`
	DryRun      *bool                       `json:"dryRun"`
	Object      *T                          `json:"object"`
	// OldObject is the stored object of an UPDATE (null for CREATE).
	OldObject *T `json:"oldObject"`
}

type review[T any] struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Request    *request[T] `json:"request"`
}

// badRequest is a client mistake: answered with a 4xx code inside a well-formed review.
type badRequest struct {
	code   int32
	reason string // metric label
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

// serve is the request cycle both handlers share: read and decode the review (answering a
// client mistake with a 4xx inside a review), let decide answer it, write the answer.
func serve[T any](w http.ResponseWriter, r *http.Request, log logr.Logger, decide func(*request[T]) *admissionv1.AdmissionResponse) {
	var rv review[T]
	if err := readReview(r, &rv); err != nil {
		var br *badRequest
		if errors.As(err, &br) && br.code == http.StatusServiceUnavailable {
			// Overload is the server's failure, not the request's: answer it at the HTTP
			// level so that the API server applies the webhook's failurePolicy instead of
			// reading a denial.
			metrics.RequestErrorsTotal.WithLabelValues(br.reason).Inc()
			w.Header().Set("Retry-After", "1")
			http.Error(w, br.msg, http.StatusServiceUnavailable)
			return
		}
		var uid types.UID
		if rv.Request != nil {
			uid = rv.Request.UID
		}
		log.Info("bad admission request", "error", err.Error(), "remote", r.RemoteAddr)
		writeError(w, rv.APIVersion, uid, err)
		return
	}
	writeResponse(w, rv.APIVersion, decide(rv.Request))
}

// readReview reads, bounds and decodes one AdmissionReview.
func readReview[T any](r *http.Request, into *review[T]) error {
	if r.Body == nil || r.Body == http.NoBody {
		return &badRequest{http.StatusBadRequest, "empty_body", "request body is empty"}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return &badRequest{http.StatusUnsupportedMediaType, "content_type",
			fmt.Sprintf("Content-Type %s is not supported: must be application/json", annotations.Truncate(ct))}
	}
	var rb requestBody
	defer rb.release()
	if err := rb.read(r); err != nil {
		return err
	}
	body := rb.b
	if err := engine.DecodeJSON(body, into); err != nil {
		return &badRequest{http.StatusBadRequest, "decode", "decoding the AdmissionReview: " + engine.DescribeJSONError(err)}
	}
	if into.Kind != "AdmissionReview" || (into.APIVersion != "admission.k8s.io/v1" && into.APIVersion != "admission.k8s.io/v1beta1") {
		return &badRequest{http.StatusBadRequest, "decode", fmt.Sprintf("body is %s %s: must be an AdmissionReview of admission.k8s.io/v1 or v1beta1",
			annotations.Truncate(into.APIVersion), annotations.Truncate(into.Kind))}
	}
	if into.Request == nil {
		return &badRequest{http.StatusBadRequest, "decode", "AdmissionReview has no request"}
	}
	return nil
}

// requestBody is a request body read into a pooled buffer (release returns it).
type requestBody struct {
	b        []byte
	pooled   *bytes.Buffer
	budget   *semaphore.Weighted
	reserved int64
}

// growth is the factor a body buffer grows by as bytes arrive: the buffer never holds more
// than growth times what the client has sent (beyond PresizeMax), and an honest large body is
// copied at most once or twice on its way to its Content-Length.
const growth = 4

// minBody is the first buffer for a body of unknown length.
const minBody = 4 << 10

// read reads the body. The buffer starts at the Content-Length, up to PresizeMax, and grows as
// bytes arrive: memory follows what the client has sent, never what it announced. Growth
// draws on the Limits budget in the request context, when there is one, and waits for it
// until the request's deadline.
func (x *requestBody) read(r *http.Request) error {
	ctx := r.Context()
	x.budget = budgetFrom(ctx)
	x.pooled = bodyPool.Get().(*bytes.Buffer)
	x.pooled.Reset()
	b := x.pooled.AvailableBuffer() // the pooled memory, empty
	defer func() { x.b = b }()
	declared := r.ContentLength // -1 when unknown (chunked); a real request with 0 has no body
	want := minBody
	switch {
	case declared >= PresizeMax:
		want = PresizeMax
	case declared > 0:
		// One byte more than announced, so that the read ending the body finds room and
		// does not grow the buffer to learn it is over.
		want = int(declared) + 1
	}
	if cap(b) < want {
		b = make([]byte, 0, want)
	}
	for {
		if len(b) == cap(b) {
			if len(b) > MaxRequestBytes {
				return &badRequest{http.StatusRequestEntityTooLarge, "too_large",
					fmt.Sprintf("request body is larger than the limit of %d bytes", MaxRequestBytes)}
			}
			newCap := min(growth*cap(b), MaxRequestBytes+1)
			if declared >= int64(len(b)) && declared < int64(newCap) {
				newCap = int(declared) + 1
			}
			if x.budget != nil {
				// Reserve the new buffer before dropping the old one: both are live while
				// the bytes are copied.
				if err := acquire(ctx, x.budget, int64(newCap)); err != nil {
					return &badRequest{http.StatusServiceUnavailable, "busy",
						fmt.Sprintf("%v: no room for a %d-byte buffer within %s", errOverBudget, newCap, BudgetWait)}
				}
				if x.reserved > 0 {
					x.budget.Release(x.reserved)
				}
				x.reserved = int64(newCap)
			}
			nb := make([]byte, len(b), newCap)
			copy(nb, b)
			b = nb
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return &badRequest{http.StatusRequestTimeout, "timeout",
					fmt.Sprintf("the request body did not arrive within the read timeout (%d bytes received)", len(b))}
			}
			return &badRequest{http.StatusBadRequest, "read", "reading the request body: " + err.Error()}
		}
	}
	if len(b) > MaxRequestBytes {
		return &badRequest{http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("request body is larger than the limit of %d bytes", MaxRequestBytes)}
	}
	return nil
}

// release gives back the budget and the buffer (which may have grown) to the pool.
func (x *requestBody) release() {
	if x.budget != nil && x.reserved > 0 {
		x.budget.Release(x.reserved)
		x.reserved = 0
	}
	if x.pooled != nil {
		*x.pooled = *bytes.NewBuffer(x.b[:0])
		putBody(x.pooled)
		x.pooled, x.b = nil, nil
	}
}

// bodyPool recycles request buffers; the decoded review copies every string it keeps, so the
// buffer is free again once readReview returns.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBody returns a buffer to the pool unless a huge request grew it: keeping multi-MiB
// buffers alive would turn one hostile request into permanent memory.
func putBody(b *bytes.Buffer) {
	if b.Cap() <= 256*1024 {
		bodyPool.Put(b)
	}
}

// response is admission.k8s.io/v1 AdmissionResponse; the library type is used as is.
type responseReview struct {
	APIVersion string                         `json:"apiVersion"`
	Kind       string                         `json:"kind"`
	Response   *admissionv1.AdmissionResponse `json:"response"`
}

func writeResponse(w http.ResponseWriter, apiVersion string, resp *admissionv1.AdmissionResponse) {
	if apiVersion == "" {
		apiVersion = "admission.k8s.io/v1"
	}
	w.Header().Set("Content-Type", "application/json")
	// Errors are told inside the review with HTTP 200, as controller-runtime does: the API
	// server reads the status from the review, and failurePolicy only applies to failed calls.
	_ = json.NewEncoder(w).Encode(responseReview{APIVersion: apiVersion, Kind: "AdmissionReview", Response: resp})
}

func writeError(w http.ResponseWriter, apiVersion string, uid types.UID, err error) {
	var br *badRequest
	if !errors.As(err, &br) {
		br = &badRequest{http.StatusInternalServerError, "internal", err.Error()}
	}
	metrics.RequestErrorsTotal.WithLabelValues(br.reason).Inc()
	writeResponse(w, apiVersion, &admissionv1.AdmissionResponse{
		UID:     uid,
		Allowed: false,
		Result:  &metav1.Status{Status: metav1.StatusFailure, Code: br.code, Message: br.msg},
	})
}

func allowed(uid types.UID, msg string) *admissionv1.AdmissionResponse {
	r := &admissionv1.AdmissionResponse{UID: uid, Allowed: true}
	if msg != "" {
		r.Result = &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK, Message: msg}
	}
	return r
}

func denied(uid types.UID, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: uid, Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg,
	}}
}
