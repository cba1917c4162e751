package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	kjson "sigs.k8s.io/json"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// FuzzDecodeDifferential checks the fast decoder against the API server's own decoder
// (sigs.k8s.io/json, case-sensitive): whenever goccy accepts an input, the API server's
// decoder must accept it too and decode exactly the same values, so the handler never sees a
// different pod than the API server holds.
func FuzzDecodeDifferential(f *testing.F) {
	for _, c := range corpus(f) {
		raw, _ := json.Marshal(c)
		f.Add(reviewBody(f, "CREATE", "Pod", json.RawMessage(raw)))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"metadata":{"labels":{"a":"b","a":"c"}}}}}`))
	f.Add([]byte(`{"request":{"object":{"spec":{"containers":[{"name":"x","lifecycle":{"preStop":{"sleep":{"seconds":1e3}}}}]}}}}`))
	f.Add([]byte(`{"request":{"object":{"spec":{"terminationGracePeriodSeconds":9223372036854775808}}}}`))
	f.Add([]byte(`{"request":{"object":{"metadata":{"annotations":{"k":"\ud800"}}}}}`))
	f.Add([]byte(`{"request":{"oBjeCt":{"metAdAtA":{"labels":{"a":"b"}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, std review[engine.PodView]
		if err := engine.DecodeJSON(body, &fast); err != nil {
			return // rejected: answered with an error, nothing decided
		}
		if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &std); err != nil {
			t.Fatalf("goccy accepted what the API server's decoder rejects (%v): %q", err, body)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("decoders disagree on %q\ngoccy: %+v\nstd:   %+v", body, fast, std)
		}
	})
}

// TestPooledBodyIsNotAliased decodes one review, reuses the pooled buffer for another, and
// checks that the first decoded values are intact: nothing may point into the recycled body.
func TestPooledBodyIsNotAliased(t *testing.T) {
	first := corpus(t)["annotations with escapes"]
	second := corpus(t)["three containers, two targets, exec"]
	read := func(obj any) *review[engine.PodView] {
		body := reviewBody(t, "CREATE", "Pod", obj)
		r := httptestRequest(body)
		var rv review[engine.PodView]
		if err := readReview(r, &rv); err != nil {
			t.Fatal(err)
		}
		return &rv
	}
	a := read(first)
	want := fmt.Sprintf("%+v", *a.Request.Object)
	for range 20 {
		_ = read(second)
	}
	if got := fmt.Sprintf("%+v", *a.Request.Object); got != want {
		t.Fatalf("decoded review changed after the buffer was reused:\nbefore %s\nafter  %s", want, got)
	}
}

func httptestRequest(body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, PathMutatePods, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}
