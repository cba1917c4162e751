package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

// BenchmarkReadBody is the handler with the Content-Length header set, as the API server sends
// it (BenchmarkHandler leaves it unset). B/op is what one review costs to read: for honest
// requests about the body's size, and for the stalled attack (a declared 7 MiB body of which
// one byte arrives) it must stay near the small pre-size, not the declared length.
func BenchmarkReadBody(b *testing.B) {
	h := &webhook.PodMutator{Policy: webhook.StaticPolicy{P: policy.Default()}, Log: logr.Discard()}
	realistic, err := podgen.Realistic()
	if err != nil {
		b.Fatal(err)
	}
	big, err := podgen.Sized(1 << 20)
	if err != nil {
		b.Fatal(err)
	}
	review := func(p any) []byte {
		pj, err := json.Marshal(p)
		if err != nil {
			b.Fatal(err)
		}
		return podgen.Review("3f0e5c1a-7b2d-4c9e-8f1a-6d5b4c3a2e10", pj)
	}
	cases := []struct {
		name     string
		body     []byte
		declared int64
	}{
		{"realistic", review(realistic), 0},
		{"1MiB", review(big), 0},
		{"stalled-7MiB-declared-1-byte-sent", []byte("{"), webhook.MaxRequestBytes},
	}
	for _, c := range cases {
		if c.declared == 0 {
			c.declared = int64(len(c.body))
		}
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, webhook.PathMutatePods, nil)
			req.Header.Set("Content-Type", "application/json")
			body := bytes.NewReader(c.body)
			rc := io.NopCloser(body)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(c.body)
				req.Body = rc
				req.ContentLength = c.declared
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}
