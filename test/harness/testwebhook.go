package harness

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// PatchOp is one JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// PodMutator returns the JSON patch to apply to a pod (nil: allow unchanged).
type PodMutator func(pod *corev1.Pod) []PatchOp

// TestWebhook is a small mutating webhook served by the test itself over TLS on 127.0.0.1,
// for cases that need another webhook beside ours (reinvocation ordering).
type TestWebhook struct {
	URL   string
	Calls atomic.Int64
	srv   *http.Server
}

// StartTestWebhook serves mutate on https://127.0.0.1:<free port>/ with the certificate in
// certDir (tls.crt, tls.key).
func StartTestWebhook(certDir string, mutate PodMutator) (*TestWebhook, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tw := &TestWebhook{URL: fmt.Sprintf("https://%s/", l.Addr().String())}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		tw.Calls.Add(1)
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "bad AdmissionReview", http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil {
			if ops := mutate(&pod); len(ops) > 0 {
				patch, _ := json.Marshal(ops)
				pt := admissionv1.PatchTypeJSONPatch
				resp.Patch, resp.PatchType = patch, &pt
			}
		}
		review.Response = resp
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	})
	tw.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := tw.srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("test webhook: %v\n", err)
		}
	}()
	return tw, nil
}

// Close stops the server.
func (tw *TestWebhook) Close() error { return tw.srv.Close() }

// StartTestWebhookT is StartTestWebhook closed in t.Cleanup.
func StartTestWebhookT(t testing.TB, certDir string, mutate PodMutator) *TestWebhook {
	t.Helper()
	tw, err := StartTestWebhook(certDir, mutate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tw.Close() })
	return tw
}
