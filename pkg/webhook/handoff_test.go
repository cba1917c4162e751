package webhook

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// fakeHolders answers the webhook's handoff question from a fixed list and records the asks.
type fakeHolders struct {
	holders []engine.Holder
	err     error
	asked   [][]string
}

func (f *fakeHolders) Holders(_, _ string, keys []string) ([]engine.Holder, error) {
	f.asked = append(f.asked, keys)
	return f.holders, f.err
}

func TestPodMutatorHandoff(t *testing.T) {
	shared := corpus(t)["claim and hostPath, ReplicaSet, another gate"]
	plain := corpus(t)["plain"]
	sts := corpus(t)["claim, StatefulSet"]
	old := []engine.Holder{{Name: "pgw-old", Volume: "pvc/pgw"}}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		src     *fakeHolders
		asked   bool
		gates   []string
		status  string
		warning string
	}{
		{name: "terminating predecessor: gated after the other gate", pod: shared, src: &fakeHolders{holders: old}, asked: true,
			gates: []string{"example.com/quota", annotations.SchedulingGateHandoff}, status: "handoff: held by " + annotations.SchedulingGateHandoff + " until pgw-old stopped (claim pgw)"},
		{name: "no predecessor: as before", pod: shared, src: &fakeHolders{}, asked: true, gates: []string{"example.com/quota"}},
		{name: "no shared volume: nobody is asked", pod: plain, src: &fakeHolders{holders: old}},
		{name: "StatefulSet: nobody is asked", pod: sts, src: &fakeHolders{holders: old}},
		{name: "check failed: ungated, with a warning", pod: shared, src: &fakeHolders{err: errors.New("the pod index has not synced yet")}, asked: true,
			gates: []string{"example.com/quota"}, warning: `the handoff check failed ("the pod index has not synced yet")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &PodMutator{Policy: StaticPolicy{policy.Default()}, Log: logr.Discard(), Handoff: tc.src}
			_, rv := post(t, h, reviewBody(t, admissionv1.Create, "Pod", tc.pod), "application/json")
			r := rv.Response
			if !r.Allowed {
				t.Fatalf("denied: %+v", r.Result)
			}
			if asked := len(tc.src.asked) > 0; asked != tc.asked {
				t.Fatalf("asked the index: %v, want %v", tc.src.asked, tc.asked)
			}
			if tc.asked && !slices.Equal(tc.src.asked[0], []string{"hostPath//srv/pg", "pvc/pgw"}) {
				t.Errorf("asked for %q", tc.src.asked[0])
			}
			raw, _ := json.Marshal(tc.pod)
			out := raw
			if len(r.Patch) > 0 {
				p, err := jsonpatch.DecodePatch(r.Patch)
				if err != nil {
					t.Fatal(err)
				}
				if out, err = p.Apply(raw); err != nil {
					t.Fatalf("patch %s does not apply: %v", r.Patch, err)
				}
			}
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			var gates []string
			for _, g := range got.Spec.SchedulingGates {
				gates = append(gates, g.Name)
			}
			if !slices.Equal(gates, tc.gates) {
				t.Errorf("scheduling gates %q, want %q (patch %s)", gates, tc.gates, r.Patch)
			}
			st := got.Annotations[annotations.AnnotationStatus]
			if tc.status != "" && !strings.Contains(st, tc.status) {
				t.Errorf("status %q, want it to contain %q", st, tc.status)
			}
			if tc.status == "" && strings.Contains(st, "handoff") {
				t.Errorf("ungated pod's status mentions the handoff: %q", st)
			}
			hasWarning := slices.ContainsFunc(r.Warnings, func(w string) bool { return tc.warning != "" && strings.Contains(w, tc.warning) })
			if (tc.warning != "") != hasWarning {
				t.Errorf("warnings %q, want one containing %q", r.Warnings, tc.warning)
			}
		})
	}
}
