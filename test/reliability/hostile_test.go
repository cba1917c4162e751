package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

type hostileCase struct {
	name        string
	path        string // default /mutate-v1-pod
	contentType string // default application/json
	body        []byte
	// Expected answer: allowed, the result code (0: no result expected / not checked) and
	// substrings of the message (warn: of the warnings; reject: of the denial).
	allowed  bool
	code     int32
	contains []string
	// absent must not appear anywhere in the answer (secrets, unbounded echoes, raw control bytes).
	absent []string
	// onReject is what the same request gets from a server with onInvalid: reject (nil: same).
	onReject *hostileExpect
}

type hostileExpect struct {
	allowed  bool
	code     int32
	contains []string
}

func annCase(name, key, value string, contains ...string) hostileCase {
	full := annotations.Prefix + key
	return hostileCase{
		name:     name,
		body:     reviewJSON("uid-"+key, "Pod", "", pushgatewayPod(map[string]string{full: value})),
		allowed:  true,
		contains: append([]string{"metadata.annotations[" + full + "]"}, contains...),
		onReject: &hostileExpect{allowed: false, code: http.StatusForbidden, contains: append([]string{"metadata.annotations[" + full + "]"}, contains...)},
	}
}

func hostileCases() []hostileCase {
	valid := reviewJSON("uid-valid", "Pod", "", pushgatewayPod(nil))
	manyContainers := make([]map[string]any, 5000)
	for i := range manyContainers {
		manyContainers[i] = map[string]any{"name": fmt.Sprintf("c%d", i), "image": "busybox"}
	}
	manyContainers[4999]["name"] = "pushgateway"
	many := pushgatewayPod(nil)
	many["spec"] = map[string]any{"containers": manyContainers}
	dup := pushgatewayPod(nil)
	dup["spec"] = map[string]any{"containers": []map[string]any{{"name": "pushgateway"}, {"name": "pushgateway"}}}
	huge := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"big","object":{"metadata":{"annotations":{"x":"` +
		strings.Repeat("A", webhook.MaxRequestBytes) + `"}}}}}`)
	long := strings.Repeat("9", 300) + "s"
	return []hostileCase{
		{name: "invalid JSON", body: []byte(`{"apiVersion": admission`), code: 400, contains: []string{"decoding the AdmissionReview", "invalid JSON"}},
		{name: "truncated body", body: valid[:len(valid)/2], code: 400, contains: []string{"decoding the AdmissionReview"}},
		{name: "empty body", body: nil, code: 400, contains: []string{"empty"}},
		{name: "wrong Content-Type", contentType: "text/plain", body: valid, code: 415, contains: []string{"Content-Type", `"text/plain"`, "application/json"}},
		{name: "not an AdmissionReview", body: []byte(`{"apiVersion":"v1","kind":"Pod"}`), code: 400, contains: []string{`"v1"`, `"Pod"`, "AdmissionReview"}},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), code: 400, contains: []string{"no request"}},
		{name: "request.object missing", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE"}}`),
			code: 400, contains: []string{"request.object"}},
		{name: "Deployment as the object", body: reviewJSON("uid-deploy", "Deployment", "apps", map[string]any{"kind": "Deployment", "spec": map[string]any{}}),
			allowed: true, contains: []string{"Deployment"}},
		{name: "Secret as the object (request says Pod)", body: reviewJSON("uid-secret", "Pod", "", map[string]any{"kind": "Secret", "data": map[string]string{"password": "SECRET-do-not-echo-42"}}),
			code: 400, contains: []string{"request.object", `"Secret"`}, absent: []string{"SECRET-do-not-echo-42"}},
		{name: "Secret as the object (request says Secret)", body: reviewJSON("uid-secret2", "Secret", "", map[string]any{"kind": "Secret", "stringData": map[string]string{"password": "SECRET-do-not-echo-42"}}),
			allowed: true, contains: []string{"Secret"}, absent: []string{"SECRET-do-not-echo-42"}},
		{name: "body over 7 MiB", body: huge, code: 413, contains: []string{"larger than the limit"}},
		{name: "5,000 containers", body: reviewJSON("uid-many", "Pod", "", many), allowed: true},
		{name: "duplicate container names", body: reviewJSON("uid-dup", "Pod", "", dup), allowed: true},
		{name: "wrong type for a field", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":"no"}}}}`),
			code: 400, contains: []string{"containers"}},
		annCase("sleep overflows int64", "pre-stop-sleep", "9999999999999999999s", `"9999999999999999999s"`),
		annCase("negative sleep", "pre-stop-sleep", "-5s", `"-5s"`),
		annCase("fractional budget", "shutdown-budget", "1.5s", `"1.5s"`),
		annCase("empty grace period", "termination-grace-period", "", `""`),
		annCase("non-ASCII digits", "pre-stop-sleep", "３０s", `"３０s"`),
		annCase("control characters", "pre-stop-action", "sleep\x1b[31m\x00", `"sleep\x1b[31m\x00"`),
		annCase("value truncated to a safe length", "pre-stop-sleep", long, `... (301 bytes)`),
		annCase("containers naming nothing that exists", "containers", "nothing-here", `nothing-here`),
		annCase("inject neither true nor false", "inject", "maybe", `"maybe"`),
	}
}

// TestHostileRequests posts every hostile request to the real server over TLS, to a server
// with the default policy (warn) and to one with onInvalid: reject, and checks each answer;
// then that the servers are still healthy, answer a valid pod, and hold no more goroutines
// than before.
func TestHostileRequests(t *testing.T) {
	for _, mode := range []string{"warn", "reject"} {
		t.Run(mode, func(t *testing.T) {
			s := startServer(t, "onInvalid: "+mode+"\n")
			c := s.client(4)
			// Warm the connection pool and the handler before counting goroutines.
			if _, _, err := post(context.Background(), c, s.URL(webhook.PathMutatePods), "application/json", reviewJSON("warm", "Pod", "", pushgatewayPod(nil))); err != nil {
				t.Fatal(err)
			}
			before := metric(t, s.MetricsURL(), "go_goroutines")
			for _, tc := range hostileCases() {
				t.Run(tc.name, func(t *testing.T) {
					want := hostileExpect{allowed: tc.allowed, code: tc.code, contains: tc.contains}
					if mode == "reject" && tc.onReject != nil {
						want = *tc.onReject
					}
					ct := tc.contentType
					if ct == "" {
						ct = "application/json"
					}
					path := tc.path
					if path == "" {
						path = webhook.PathMutatePods
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					start := time.Now()
					status, rv, err := post(ctx, c, s.URL(path), ct, tc.body)
					if err != nil {
						t.Fatalf("no answer (hang or reset): %v", err)
					}
					if status != http.StatusOK {
						t.Fatalf("HTTP %d, want 200 with the error inside the review", status)
					}
					r := rv.Response
					if r == nil {
						t.Fatal("review without a response")
					}
					raw, _ := json.Marshal(r)
					var code int32
					if r.Result != nil {
						code = r.Result.Code
					}
					t.Logf("%s in %s: allowed=%v code=%d patch=%dB answer=%q", tc.name, time.Since(start).Round(time.Millisecond), r.Allowed, code, len(r.Patch), answerText(r))
					if r.Allowed != want.allowed {
						t.Errorf("allowed = %v, want %v", r.Allowed, want.allowed)
					}
					if r.Result != nil && r.Result.Code >= 500 {
						t.Errorf("a client mistake got a %d", r.Result.Code)
					}
					if want.code != 0 && (r.Result == nil || r.Result.Code != want.code) {
						t.Errorf("result %+v, want code %d", r.Result, want.code)
					}
					text := answerText(r)
					for _, sub := range want.contains {
						if !strings.Contains(text, sub) {
							t.Errorf("answer does not contain %q:\n%s", sub, text)
						}
					}
					for _, sub := range tc.absent {
						if strings.Contains(string(raw), sub) {
							t.Errorf("answer contains %q", sub)
						}
					}
					if strings.ContainsAny(text, "\x00\x1b") {
						t.Errorf("answer carries raw control characters: %q", text)
					}
					if len(text) > 4096 {
						t.Errorf("answer text of %d bytes: input echoed unbounded", len(text))
					}
					if tc.name == "5,000 containers" && time.Since(start) > 5*time.Second {
						t.Errorf("5,000 containers took %s", time.Since(start))
					}
				})
			}
			healthy(t, s)
			status, rv, err := post(context.Background(), c, s.URL(webhook.PathMutatePods), "application/json", reviewJSON("after", "Pod", "", pushgatewayPod(nil)))
			if err != nil || status != 200 || !rv.Response.Allowed || len(rv.Response.Patch) == 0 {
				t.Fatalf("a valid pod after the hostile table: status %d, err %v, review %+v", status, err, rv)
			}
			c.CloseIdleConnections()
			after := goroutinesSettled(t, s, before+2)
			t.Logf("go_goroutines before %v, after %v", before, after)
			if after > before+2 {
				t.Errorf("goroutines grew from %v to %v", before, after)
			}
		})
	}
}

func answerText(r *admissionv1.AdmissionResponse) string {
	var b strings.Builder
	if r.Result != nil {
		b.WriteString(r.Result.Message)
		b.WriteString("\n")
	}
	for _, w := range r.Warnings {
		b.WriteString(w)
		b.WriteString("\n")
	}
	return b.String()
}
