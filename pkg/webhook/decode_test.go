package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	gojson "github.com/goccy/go-json"
)

// FuzzDecodeDifferential checks the fast decoder against encoding/json: whenever goccy
// accepts an input, encoding/json must accept it too and decode exactly the same values,
// so the fast path can never decide differently from the standard library.
func FuzzDecodeDifferential(f *testing.F) {
	for _, c := range corpus(f) {
		raw, _ := json.Marshal(c)
		f.Add(reviewBody(f, "CREATE", "Pod", json.RawMessage(raw)))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"metadata":{"labels":{"a":"b","a":"c"}}}}}`))
	f.Add([]byte(`{"request":{"object":{"spec":{"containers":[{"name":"x","lifecycle":{"preStop":{"sleep":{"seconds":1e3}}}}]}}}}`))
	f.Add([]byte(`{"request":{"object":{"spec":{"terminationGracePeriodSeconds":9223372036854775808}}}}`))
	f.Add([]byte(`{"request":{"object":{"metadata":{"annotations":{"k":"\ud800"}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, std review[podView]
		if err := gojson.Unmarshal(body, &fast); err != nil {
			return // decodeJSON falls back to encoding/json: same result by construction
		}
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("goccy accepted what encoding/json rejects (%v): %q", err, body)
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
	read := func(obj any) *review[podView] {
		body := reviewBody(t, "CREATE", "Pod", obj)
		r := httptestRequest(body)
		var rv review[podView]
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
