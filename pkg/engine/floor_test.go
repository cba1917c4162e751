package engine

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// longestSleepOf is the longest readable preStop sleep of any container the API server bounds
// by terminationGracePeriodSeconds (regular containers and restartable init containers), with
// the container that has it; the engine must never produce a grace period below it.
func longestSleepOf(p *corev1.Pod) (int64, string) {
	var m int64
	var who string
	all := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range all {
		if c.Lifecycle == nil {
			continue
		}
		if s, ok := HookSleepSeconds(c.Lifecycle.PreStop); ok && s > m {
			m, who = s, c.Name
		}
	}
	return m, who
}

func sleepLC(n int64) *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: n}}}
}

func withSidecar(lc *corev1.Lifecycle) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy", Lifecycle: lc})
	}
}

func withNativeSidecar(lc *corev1.Lifecycle) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "proxy", Image: "envoy", RestartPolicy: &always, Lifecycle: lc})
	}
}

func grace(n int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = i64(n) }
}

// TestGraceFloorOtherContainers: the grace period covers the preStop sleep of every container,
// not only the targets' (review of issue 26: termination-grace-period 40s lowered the grace of
// a pod whose sidecar sleeps 60 from 90 to 40, which the API server refuses: sleep > grace).
func TestGraceFloorOtherContainers(t *testing.T) {
	const low = `termination-grace-period]: Invalid value: "40s": must be at least the longest preStop sleep of the pod, 1m0s (container "proxy"), so from 1m0s to 10m0s`
	execSleep60 := &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "sleep 60"}}}}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		pol     *policy.Policy
		outcome Outcome
		grace   int64
		warn    string // substring of the only warning; "" for none
	}{
		{name: "regular sidecar, annotation below its sleep warns and derives",
			pod: pgwPod(grace(90), withSidecar(sleepLC(60)), withAnn(annotations.AnnotationTerminationGracePeriod, "40s")), pol: pol(),
			outcome: OutcomeInvalid, grace: 90, warn: low},
		{name: "native sidecar, annotation below its sleep warns and derives",
			pod: pgwPod(grace(90), withNativeSidecar(sleepLC(60)), withAnn(annotations.AnnotationTerminationGracePeriod, "40s")), pol: pol(),
			outcome: OutcomeInvalid, grace: 90, warn: low},
		{name: "native sidecar with an exec sleep",
			pod: pgwPod(grace(90), withNativeSidecar(execSleep60), withAnn(annotations.AnnotationTerminationGracePeriod, "40s")), pol: pol(),
			outcome: OutcomeInvalid, grace: 90, warn: low},
		{name: "native sidecar, annotation below its sleep is denied with reject",
			pod: pgwPod(grace(90), withNativeSidecar(sleepLC(60)), withAnn(annotations.AnnotationTerminationGracePeriod, "40s")), pol: pol(reject),
			outcome: OutcomeDenied, grace: 90},
		{name: "annotation equal to the sidecar's sleep is accepted",
			pod: pgwPod(grace(90), withNativeSidecar(sleepLC(60)), withAnn(annotations.AnnotationTerminationGracePeriod, "60s")), pol: pol(),
			outcome: OutcomeInjected, grace: 60},
		{name: "derived grace never below a sidecar's sleep",
			pod: pgwPod(grace(30), withSidecar(sleepLC(70))), pol: pol(),
			outcome: OutcomeInjected, grace: 70},
		{name: "derived grace never below a native sidecar's sleep, even when capped",
			pod: pgwPod(grace(30), withNativeSidecar(sleepLC(700))), pol: pol(),
			outcome: OutcomeInjected, grace: 700},
		{name: "a sidecar's unreadable hook does not count",
			pod: pgwPod(grace(30), withSidecar(&corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/quit"}}}),
				withAnn(annotations.AnnotationTerminationGracePeriod, "40s")), pol: pol(),
			outcome: OutcomeInjected, grace: 40},
		{name: "own sleep longest: the message names the target",
			pod: pgwPod(grace(90), withSidecar(sleepLC(20)), withAnn(annotations.AnnotationTerminationGracePeriod, "10s")), pol: pol(),
			outcome: OutcomeInvalid, grace: 90,
			warn: `"10s": must be at least the longest preStop sleep of the pod, 30s (container "pushgateway"), so from 30s to 10m0s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, d := Mutate(tc.pod, "ns", tc.pol)
			if d.Outcome != tc.outcome {
				t.Errorf("outcome = %s, want %s (problems %v)", d.Outcome, tc.outcome, d.Problems)
			}
			g := KubernetesDefaultGracePeriod
			if out.Spec.TerminationGracePeriodSeconds != nil {
				g = *out.Spec.TerminationGracePeriodSeconds
			}
			if g != tc.grace {
				t.Errorf("grace = %d, want %d", g, tc.grace)
			}
			if s, who := longestSleepOf(out); s > g {
				t.Errorf("container %s sleeps %ds > terminationGracePeriodSeconds %d: the API server refuses the pod", who, s, g)
			}
			switch {
			case tc.warn == "" && len(d.Warnings) > 0:
				t.Errorf("warnings = %q, want none", d.Warnings)
			case tc.warn != "" && (len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], tc.warn)):
				t.Errorf("warnings = %q, want one containing %q", d.Warnings, tc.warn)
			}
			if tc.outcome == OutcomeDenied && len(d.Problems) > 0 && !strings.Contains(d.DenyMessage(), strings.TrimPrefix(low, "termination-grace-period]: ")) {
				t.Errorf("deny message %q does not explain the floor", d.DenyMessage())
			}
			if again, d2 := Mutate(out, "ns", tc.pol); d.Outcome != OutcomeDenied && (d2.Changed() || !equalPods(again, out)) {
				t.Errorf("second pass changed the pod: %s %q", d2.Outcome, d2.Status)
			}
		})
	}
}
