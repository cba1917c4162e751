package engine

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

var t0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func withClaim(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v-" + name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
	}
}

func withHostPath(path string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: path}}})
	}
}

func withEmptyDir(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
}

func ownedBy(kind string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: "pgw", Controller: &yes}}
	}
}

func named(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Name = n } }

// terminating marks a pod deleted at t0 on node n whose container still runs.
func terminating(p *corev1.Pod) {
	p.DeletionTimestamp = &metav1.Time{Time: t0}
	p.Spec.NodeName = "node-a"
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "pushgateway", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
}

func running(p *corev1.Pod) {
	p.Spec.NodeName = "node-a"
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "pushgateway", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
}

func exited(p *corev1.Pod) {
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}
	}
}

func noStatus(p *corev1.Pod) { p.Status = corev1.PodStatus{} }

// TestHandoffGate covers the admission side: which new pods may be gated (HandoffKeys from
// Decide) and which siblings hold them (Holders, then Gate).
func TestHandoffGate(t *testing.T) {
	off := func(p *policy.Policy) { p.Handoff.Mode = annotations.HandoffOff }
	cases := []struct {
		name    string
		pod     *corev1.Pod
		pol     *policy.Policy
		others  []*corev1.Pod
		keys    []string
		gated   bool
		holders []string
	}{
		{name: "terminating sibling on the same claim",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)},
			keys: []string{"pvc/data"}, gated: true, holders: []string{"old"}},
		{name: "terminating sibling on the same hostPath (cleaned)",
			pod: pgwPod(named("new"), withHostPath("/srv/pg/")), others: []*corev1.Pod{pgwPod(named("old"), withHostPath("/srv//pg"), terminating)},
			keys: []string{"hostPath//srv/pg"}, gated: true, holders: []string{"old"}},
		{name: "running sibling never holds (surge rollout)",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), running)},
			keys: []string{"pvc/data"}},
		{name: "no sibling: the normal start",
			pod: pgwPod(named("new"), withClaim("data")), keys: []string{"pvc/data"}},
		{name: "terminating sibling on another claim",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("other"), terminating)},
			keys: []string{"pvc/data"}},
		{name: "terminating sibling whose containers all exited",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating, exited)},
			keys: []string{"pvc/data"}},
		{name: "terminating sibling bound to a node that reported nothing yet holds",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating, func(p *corev1.Pod) {
				p.Status = corev1.PodStatus{}
			})},
			keys: []string{"pvc/data"}, gated: true, holders: []string{"old"}},
		{name: "terminating sibling never bound ran nothing",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating, noStatus, func(p *corev1.Pod) {
				p.Spec.NodeName = ""
			})},
			keys: []string{"pvc/data"}},
		{name: "two terminating siblings, one stopped",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{
				pgwPod(named("old-1"), withClaim("data"), terminating, exited),
				pgwPod(named("old-2"), withClaim("data"), terminating)},
			keys: []string{"pvc/data"}, gated: true, holders: []string{"old-2"}},
		{name: "emptyDir only: nothing to hand off",
			pod: pgwPod(named("new"), withEmptyDir), others: []*corev1.Pod{pgwPod(named("old"), withEmptyDir, terminating)}},
		{name: "StatefulSet pod is serial already",
			pod: pgwPod(named("new"), withClaim("data"), ownedBy("StatefulSet")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}},
		{name: "DaemonSet pod is node-bound",
			pod: pgwPod(named("new"), withHostPath("/srv/pg"), ownedBy("DaemonSet")), others: []*corev1.Pod{pgwPod(named("old"), withHostPath("/srv/pg"), terminating)}},
		{name: "ReplicaSet pod is a candidate",
			pod: pgwPod(named("new"), withClaim("data"), ownedBy("ReplicaSet")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)},
			keys: []string{"pvc/data"}, gated: true, holders: []string{"old"}},
		{name: "pod annotation off",
			pod: pgwPod(named("new"), withClaim("data"), withAnn(annotations.AnnotationHandoff, "off")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}},
		{name: "policy mode off",
			pod: pgwPod(named("new"), withClaim("data")), pol: pol(off), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}},
		{name: "pod that names its node cannot take a gate",
			pod: pgwPod(named("new"), withClaim("data"), func(p *corev1.Pod) { p.Spec.NodeName = "node-a" }), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}},
		{name: "opted-out pod is skipped before any handoff",
			pod: pgwPod(named("new"), withClaim("data"), withAnn(annotations.AnnotationInject, "false")), others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}},
		{name: "a pod is not its own holder",
			pod: pgwPod(named("new"), withClaim("data")), others: []*corev1.Pod{pgwPod(named("new"), withClaim("data"), terminating)},
			keys: []string{"pvc/data"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pol
			if p == nil {
				p = pol()
			}
			d := Decide(tc.pod, "monitoring", p)
			if !slices.Equal(d.HandoffKeys, tc.keys) {
				t.Fatalf("HandoffKeys = %q, want %q", d.HandoffKeys, tc.keys)
			}
			hs := Holders(tc.pod.Name, d.HandoffKeys, tc.others)
			var names []string
			for _, h := range hs {
				names = append(names, h.Name)
			}
			if !slices.Equal(names, tc.holders) {
				t.Fatalf("holders = %q, want %q", names, tc.holders)
			}
			Gate(&d, tc.pod, hs)
			if d.Gate != tc.gated {
				t.Fatalf("Gate = %v, want %v (status %q)", d.Gate, tc.gated, d.Status)
			}
			out := tc.pod.DeepCopy()
			Apply(out, &d)
			if HasGate(out) != tc.gated {
				t.Fatalf("applied pod gated = %v, want %v: %v", HasGate(out), tc.gated, out.Spec.SchedulingGates)
			}
			if tc.gated {
				want := "handoff: held by " + annotations.SchedulingGateHandoff + " until " + strings.Join(tc.holders, ",") + " stopped"
				if !strings.Contains(out.Annotations[annotations.AnnotationStatus], want) {
					t.Errorf("status %q does not say %q", out.Annotations[annotations.AnnotationStatus], want)
				}
			} else if strings.Contains(out.Annotations[annotations.AnnotationStatus], "handoff") {
				t.Errorf("ungated pod's status mentions the handoff: %q", out.Annotations[annotations.AnnotationStatus])
			}
		})
	}
}

// TestGateKeepsOtherGates: a pod that already carries another scheduling gate gets ours added
// after it, and a pod that carries ours already is not gated twice.
func TestGateKeepsOtherGates(t *testing.T) {
	old := []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}
	p := pgwPod(named("new"), withClaim("data"), func(p *corev1.Pod) {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/quota"}}
	})
	d := Decide(p, "monitoring", pol())
	Gate(&d, p, Holders(p.Name, d.HandoffKeys, old))
	if !d.Gate || !d.HadSchedulingGates {
		t.Fatalf("Gate=%v HadSchedulingGates=%v, want both", d.Gate, d.HadSchedulingGates)
	}
	out := p.DeepCopy()
	Apply(out, &d)
	want := []corev1.PodSchedulingGate{{Name: "example.com/quota"}, {Name: annotations.SchedulingGateHandoff}}
	if !slices.Equal(out.Spec.SchedulingGates, want) {
		t.Fatalf("gates = %v, want %v", out.Spec.SchedulingGates, want)
	}
	// Decided again on the gated pod (a reinvocation): nothing more.
	d2 := Decide(out, "monitoring", pol())
	Gate(&d2, out, Holders(out.Name, d2.HandoffKeys, old))
	if d2.Gate {
		t.Fatal("a pod carrying the gate was gated again")
	}
}

// TestGateOnUnchangedPod: a pod whose hook and grace are already right still gets the gate,
// and the status then says both.
func TestGateOnUnchangedPod(t *testing.T) {
	first, _ := Mutate(pgwPod(named("new"), withClaim("data")), "monitoring", pol())
	d := Decide(first, "monitoring", pol())
	if d.Outcome != OutcomeUnchanged {
		t.Fatalf("second pass outcome %s, want unchanged", d.Outcome)
	}
	Gate(&d, first, Holders(first.Name, d.HandoffKeys, []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)}))
	if !d.Gate || d.Outcome != OutcomeInjected || !d.Changed() {
		t.Fatalf("gate=%v outcome=%s changed=%v", d.Gate, d.Outcome, d.Changed())
	}
	prev := first.Annotations[annotations.AnnotationStatus]
	if !strings.HasPrefix(d.Status, prev+"; handoff: ") {
		t.Fatalf("status %q does not extend %q", d.Status, prev)
	}
}

func TestDecideRelease(t *testing.T) {
	gated := pgwPod(named("new"), withClaim("data"), func(p *corev1.Pod) {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: annotations.SchedulingGateHandoff}}
	})
	later := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0.Add(10 * time.Second)} }
	const maxWait = 30 * time.Second
	cases := []struct {
		name     string
		others   []*corev1.Pod
		now      time.Time
		lift     bool
		timedOut bool
		deadline time.Time
	}{
		{name: "holder gone", now: t0, lift: true},
		{name: "holder still running its container", others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)},
			now: t0.Add(5 * time.Second), deadline: t0.Add(maxWait)},
		{name: "holder stopped", others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating, exited)}, now: t0, lift: true},
		{name: "holder failed phase", others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating, func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed })},
			now: t0, lift: true},
		{name: "running pod on the claim does not hold", others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), running)}, now: t0, lift: true},
		{name: "at the deadline: timed out", others: []*corev1.Pod{pgwPod(named("old"), withClaim("data"), terminating)},
			now: t0.Add(maxWait), lift: true, timedOut: true, deadline: t0.Add(maxWait)},
		{name: "deadline follows the last holder", others: []*corev1.Pod{
			pgwPod(named("old-1"), withClaim("data"), terminating),
			pgwPod(named("old-2"), withClaim("data"), terminating, later)},
			now: t0.Add(maxWait), deadline: t0.Add(10*time.Second + maxWait)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := DecideRelease(gated, tc.others, maxWait, tc.now)
			if r.Now != tc.lift || r.TimedOut != tc.timedOut {
				t.Fatalf("Now=%v TimedOut=%v, want %v %v (holders %v)", r.Now, r.TimedOut, tc.lift, tc.timedOut, r.Holders)
			}
			if !r.Deadline.Equal(tc.deadline) {
				t.Fatalf("deadline %s, want %s", r.Deadline, tc.deadline)
			}
		})
	}
}

func TestVolumeKeys(t *testing.T) {
	p := pgwPod(withClaim("b"), withClaim("a"), withClaim("a"), withEmptyDir, withHostPath("/x/../srv/pg"))
	got := VolumeKeys(p)
	want := []string{"hostPath//srv/pg", "pvc/a", "pvc/b"}
	if !slices.Equal(got, want) {
		t.Fatalf("VolumeKeys = %q, want %q", got, want)
	}
	for k, w := range map[string]string{"pvc/a": "claim a", "hostPath//srv/pg": "hostPath /srv/pg"} {
		if d := DescribeVolumeKey(k); d != w {
			t.Errorf("DescribeVolumeKey(%q) = %q, want %q", k, d, w)
		}
	}
}
