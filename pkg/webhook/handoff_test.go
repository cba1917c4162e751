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
			got := patched(t, tc.pod, r)
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

// TestPodMutatorDrain: the drain's readiness gate goes on a pod whose store does not survive
// it, only where the controller runs (a HolderSource is set), never twice, and never where
// the pod or the policy opted out of the handoff.
func TestPodMutatorDrain(t *testing.T) {
	pod := func(args []string, vol corev1.VolumeSource, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{}
		p.Name, p.Namespace = "pgw", "monitoring"
		p.Labels = map[string]string{annotations.LabelAppName: "prometheus-pushgateway"}
		p.Spec.Containers = []corev1.Container{{Name: "pushgateway", Image: "prom/pushgateway:v1.11.3", Args: args,
			VolumeMounts: []corev1.VolumeMount{{Name: "storage", MountPath: "/data"}}}}
		p.Spec.Volumes = []corev1.Volume{{Name: "storage", VolumeSource: vol}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	claim := corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pgw"}}
	empty := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	nfs := corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/pg"}}
	persist := []string{"--persistence.file=/data/pg.db"}
	off := policy.Default()
	off.Handoff.Mode = annotations.HandoffOff
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		pol     *policy.Policy
		noIndex bool
		want    []string
	}{
		{name: "no persistence flag", pod: pod(nil, empty), want: []string{annotations.ConditionAcceptingPushes}},
		{name: "file on an emptyDir", pod: pod(persist, empty), want: []string{annotations.ConditionAcceptingPushes}},
		{name: "file in the container's filesystem", pod: pod([]string{"--persistence.file", "/tmp/pg.db"}, claim), want: []string{annotations.ConditionAcceptingPushes}},
		{name: "file on a claim", pod: pod(persist, claim)},
		{name: "file on an NFS volume (a source the view does not read)", pod: pod(persist, nfs)},
		{name: "after another readiness gate", pod: pod(nil, empty, func(p *corev1.Pod) {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
		}), want: []string{"example.com/lb", annotations.ConditionAcceptingPushes}},
		{name: "already there: not twice", pod: pod(nil, empty, func(p *corev1.Pod) {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: annotations.ConditionAcceptingPushes}}
		}), want: []string{annotations.ConditionAcceptingPushes}},
		{name: "pod opted out of the handoff", pod: pod(nil, empty, func(p *corev1.Pod) {
			p.Annotations = map[string]string{annotations.AnnotationHandoff: annotations.HandoffOff}
		})},
		{name: "policy handoff.mode off", pod: pod(nil, empty), pol: off},
		{name: "no controller (no handoff index): never", pod: pod(nil, empty), noIndex: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = policy.Default()
			}
			h := &PodMutator{Policy: StaticPolicy{pol}, Log: logr.Discard()}
			if !tc.noIndex {
				h.Handoff = &fakeHolders{}
			}
			_, rv := post(t, h, reviewBody(t, admissionv1.Create, "Pod", tc.pod), "application/json")
			r := rv.Response
			if !r.Allowed {
				t.Fatalf("denied: %+v", r.Result)
			}
			got := patched(t, tc.pod, r)
			var gates []string
			for _, g := range got.Spec.ReadinessGates {
				gates = append(gates, string(g.ConditionType))
			}
			if !slices.Equal(gates, tc.want) {
				t.Errorf("readiness gates %q, want %q (patch %s)", gates, tc.want, r.Patch)
			}
			added := len(tc.want) > len(tc.pod.Spec.ReadinessGates)
			if st := got.Annotations[annotations.AnnotationStatus]; strings.Contains(st, "drain:") != added {
				t.Errorf("status %q: mentions the drain %v, want %v", st, !added, added)
			}
		})
	}
}

// patched is the pod with the response's patch applied.
func patched(t *testing.T, pod *corev1.Pod, r *admissionv1.AdmissionResponse) corev1.Pod {
	t.Helper()
	raw, _ := json.Marshal(pod)
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
	return got
}
