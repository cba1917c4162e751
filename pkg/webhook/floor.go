package webhook

import (
	"io"
	"net/http"
)

// floorResponse is constant: the floor measures TLS, HTTP and the webhook server's own
// overhead with no JSON work at all, the lower bound for any handler on this server.
var floorResponse = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}` + "\n")

// Floor is the benchmark-only handler behind the hidden --floor flag: it reads the body (as
// any handler must, to keep the connection reusable) and answers a constant allowed review.
type Floor struct{}

func (Floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxRequestBytes+1))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(floorResponse)
}
