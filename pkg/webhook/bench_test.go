package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/cputime"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

// The benchmarks `make bench` reads (test/bench parses their output by these names):
//
//	DecodePod:  json.Unmarshal of the pod alone into corev1.Pod, the baseline any webhook pays.
//	HandlerZap: Handler with serve's real logger.
//	Handler:    PodMutator.ServeHTTP on the whole AdmissionReview: read, decode, decide, patch,
//	            encode the response. Target: <= 2x DecodePod on the realistic pod.
//	Generic:    what a plain controller-runtime defaulter does for the same result (decode the
//	            review, decode the pod, mutate, re-encode, diff with PatchResponseFromRaw), for
//	            orientation.

type benchCase struct {
	name    string
	podJSON []byte
	review  []byte
}

func benchCases(b *testing.B) []benchCase {
	b.Helper()
	cs, err := podgen.Cases()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]benchCase, 0, len(cs))
	for _, c := range cs {
		pj, err := json.Marshal(c.Pod)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, benchCase{c.Name, pj, podgen.Review("3f0e5c1a-7b2d-4c9e-8f1a-6d5b4c3a2e10", pj)})
	}
	return out
}

func BenchmarkDecodePod(b *testing.B) {
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.podJSON)))
			b.ReportAllocs()
			cpu0 := cputime.Now()
			for b.Loop() {
				var pod corev1.Pod
				if err := json.Unmarshal(c.podJSON, &pod); err != nil {
					b.Fatal(err)
				}
			}
			cputime.Report(b, cpu0)
		})
	}
}

// discardWriter is the cheapest http.ResponseWriter, so that the benchmark measures the
// handler and not httptest.ResponseRecorder's buffering.
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func BenchmarkHandler(b *testing.B) {
	benchHandler(b, logr.Discard())
}

// BenchmarkHandlerZap is Handler with the logger `serve` builds (controller-runtime's zap in
// production mode, output discarded): the per-request logger work the server really pays.
func BenchmarkHandlerZap(b *testing.B) {
	benchHandler(b, zap.New(zap.WriteTo(io.Discard)).WithName("pods"))
}

func benchHandler(b *testing.B, log logr.Logger) {
	h := &webhook.PodMutator{Policy: webhook.StaticPolicy{P: policy.Default()}, Log: log}
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			checkMutates(b, h, c.review)
			req := httptest.NewRequest(http.MethodPost, webhook.PathMutatePods, nil)
			req.Header.Set("Content-Type", "application/json")
			body := bytes.NewReader(c.review)
			rc := io.NopCloser(body)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(c.review)))
			b.ReportAllocs()
			cpu0 := cputime.Now()
			for b.Loop() {
				body.Reset(c.review)
				req.Body = rc
				clear(w.h)
				h.ServeHTTP(w, req)
			}
			cputime.Report(b, cpu0)
		})
	}
}

// checkMutates makes sure the benchmark measures the mutating path, not an error answer.
func checkMutates(b *testing.B, h http.Handler, review []byte) {
	b.Helper()
	req := httptest.NewRequest(http.MethodPost, webhook.PathMutatePods, bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		b.Fatalf("bad response %q: %v", rec.Body.String(), err)
	}
	if !out.Response.Allowed || len(out.Response.Patch) == 0 || !strings.Contains(string(out.Response.Patch), "preStop") {
		b.Fatalf("the pod was not mutated: %s", rec.Body.String())
	}
}

func BenchmarkGeneric(b *testing.B) {
	pol := policy.Default()
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.review)))
			b.ReportAllocs()
			cpu0 := cputime.Now()
			for b.Loop() {
				var rv admissionv1.AdmissionReview
				if err := json.Unmarshal(c.review, &rv); err != nil {
					b.Fatal(err)
				}
				var pod corev1.Pod
				if err := json.Unmarshal(rv.Request.Object.Raw, &pod); err != nil {
					b.Fatal(err)
				}
				out, _ := engine.Mutate(&pod, rv.Request.Namespace, pol)
				raw, err := json.Marshal(out)
				if err != nil {
					b.Fatal(err)
				}
				resp := admission.PatchResponseFromRaw(rv.Request.Object.Raw, raw)
				if len(resp.Patches) == 0 {
					b.Fatal("no patch")
				}
				rv.Response = &resp.AdmissionResponse
				if _, err := json.Marshal(rv); err != nil {
					b.Fatal(err)
				}
			}
			cputime.Report(b, cpu0)
		})
	}
}
