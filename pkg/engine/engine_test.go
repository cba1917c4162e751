package engine

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

func i64(n int64) *int64 { return &n }

// pgwPod is the upstream chart's pod reduced to what the engine reads.
func pgwPod(mod ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pgw", Namespace: "monitoring",
			Labels: map[string]string{annotations.LabelAppName: "prometheus-pushgateway"}},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}},
			TerminationGracePeriodSeconds: i64(30),
		},
	}
	for _, m := range mod {
		m(p)
	}
	return p
}

func withAnn(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func pol(mod ...func(*policy.Policy)) *policy.Policy {
	p := policy.Default()
	for _, m := range mod {
		m(p)
	}
	if errs := p.Validate(); len(errs) > 0 {
		panic(errs.ToAggregate())
	}
	return p
}

func reject(p *policy.Policy)  { p.OnInvalid = policy.OnInvalidReject }
func replace(p *policy.Policy) { p.ExistingPreStop = policy.ExistingPreStopReplace }

// sleepOf returns the container's preStop as "sleep N" / "exec ..." / "" for compact asserts.
func hookOf(p *corev1.Pod, name string) string {
	for _, c := range p.Spec.Containers {
		if c.Name != name {
			continue
		}
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			return ""
		}
		return DescribeHook(c.Lifecycle.PreStop)
	}
	return "no such container"
}

func TestMutate(t *testing.T) {
	type want struct {
		outcome Outcome
		hooks   map[string]string // container -> hook after mutation
		grace   int64             // 0: field absent
		status  string            // substring of the status annotation; "-" means absent
		warns   []string          // substrings, one per warning, in order
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ns   string
		pol  *policy.Policy
		want want
	}{
		{name: "defaults on the upstream chart's pod", pod: pgwPod(), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45,
				status: "injected: sleep 30s on pushgateway; terminationGracePeriodSeconds 30->45"}},
		{name: "label pushgateway also selected", pod: pgwPod(func(p *corev1.Pod) { p.Labels[annotations.LabelAppName] = "pushgateway" }), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45}},
		{name: "grace unset counts as 30", pod: pgwPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = nil }), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45, status: "30->45"}},
		{name: "never shortens a longer grace", pod: pgwPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = i64(120) }), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 120, status: "terminationGracePeriodSeconds 120"}},
		{name: "sleep and budget annotations", pod: pgwPod(withAnn(annotations.AnnotationPreStopSleep, "90s", annotations.AnnotationShutdownBudget, "20s")), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 1m30s"}, grace: 110}},
		{name: "bare seconds", pod: pgwPod(withAnn(annotations.AnnotationPreStopSleep, "45", annotations.AnnotationShutdownBudget, "0")), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 45s"}, grace: 45}},
		{name: "explicit grace wins", pod: pgwPod(withAnn(annotations.AnnotationTerminationGracePeriod, "2m")), pol: pol(),
			want: want{outcome: OutcomeInjected, grace: 120, hooks: map[string]string{"pushgateway": "sleep 30s"}}},
		{name: "explicit grace equal to sleep is allowed", pod: pgwPod(withAnn(annotations.AnnotationTerminationGracePeriod, "30s")), pol: pol(),
			want: want{outcome: OutcomeInjected, grace: 30, hooks: map[string]string{"pushgateway": "sleep 30s"}, status: "injected: sleep 30s on pushgateway; terminationGracePeriodSeconds 30"}},
		{name: "explicit grace below sleep warns and derives", pod: pgwPod(withAnn(annotations.AnnotationTerminationGracePeriod, "10s")), pol: pol(),
			want: want{outcome: OutcomeInvalid, grace: 45, hooks: map[string]string{"pushgateway": "sleep 30s"},
				warns: []string{`termination-grace-period]: Invalid value: "10s": must be at least the longest preStop sleep of the pod, 30s (container "pushgateway"), so from 30s to 10m0s`}}},
		{name: "explicit grace below sleep is denied with reject", pod: pgwPod(withAnn(annotations.AnnotationTerminationGracePeriod, "10s")), pol: pol(reject),
			want: want{outcome: OutcomeDenied, grace: 30, hooks: map[string]string{"pushgateway": ""}, status: "-"}},
		{name: "exec action", pod: pgwPod(withAnn(annotations.AnnotationPreStopAction, "exec", annotations.AnnotationPreStopSleep, "90s")), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": `exec "/bin/sh -c sleep 90"`}, grace: 105}},
		{name: "auto follows the policy", pod: pgwPod(withAnn(annotations.AnnotationPreStopAction, "auto")), pol: pol(func(p *policy.Policy) { p.Defaults.PreStopAction = "exec" }),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": `exec "/bin/sh -c sleep 30"`}, grace: 45}},
		{name: "auto is sleep by default", pod: pgwPod(withAnn(annotations.AnnotationPreStopAction, "auto")), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}}},
		{name: "policy defaults", pod: pgwPod(), pol: pol(func(p *policy.Policy) { p.Defaults.PreStopSleep = 10; p.Defaults.ShutdownBudget = 50 }),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 10s"}, grace: 60}},
		{name: "opt-out annotation", pod: pgwPod(withAnn(annotations.AnnotationInject, "false")), pol: pol(),
			want: want{outcome: OutcomeSkipped, hooks: map[string]string{"pushgateway": ""}, grace: 30, status: "skipped: inject=false"}},
		{name: "inject value neither true nor false warns", pod: pgwPod(withAnn(annotations.AnnotationInject, "no")), pol: pol(),
			want: want{outcome: OutcomeInvalid, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45,
				warns: []string{`inject]: Invalid value: "no"`}}},
		{name: "unselected pod untouched", pod: pgwPod(func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web"} }), pol: pol(),
			want: want{outcome: OutcomeSkipped, hooks: map[string]string{"pushgateway": ""}, grace: 30, status: "-"}},
		{name: "inject label selects whatever the selector says", pod: pgwPod(func(p *corev1.Pod) { p.Labels = map[string]string{annotations.LabelInject: "true"} }), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45}},
		{name: "custom selector", pod: pgwPod(func(p *corev1.Pod) { p.Labels = map[string]string{"team": "obs"} }),
			pol: pol(func(p *policy.Policy) {
				p.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "obs"}}
			}),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}}},
		{name: "mirror pod untouched", pod: pgwPod(withAnn(annotations.AnnotationMirror, "x")), pol: pol(),
			want: want{outcome: OutcomeSkipped, hooks: map[string]string{"pushgateway": ""}, grace: 30, status: "-"}},
		{name: "kube-system untouched", pod: pgwPod(), ns: "kube-system", pol: pol(),
			want: want{outcome: OutcomeSkipped, hooks: map[string]string{"pushgateway": ""}, grace: 30, status: "-"}},
		{name: "target by image when the name differs", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers = []corev1.Container{{Name: "sidecar", Image: "busybox"}, {Name: "pgw", Image: "registry.local:5000/mirror/pushgateway@sha256:abcd"}}
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pgw": "sleep 30s", "sidecar": ""}}},
		{name: "single container of any name", pod: pgwPod(func(p *corev1.Pod) { p.Spec.Containers = []corev1.Container{{Name: "main", Image: "my/gw:1"}} }), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"main": "sleep 30s"}}},
		{name: "several containers none recognised", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers = []corev1.Container{{Name: "a", Image: "x"}, {Name: "b", Image: "y"}}
		}), pol: pol(), want: want{outcome: OutcomeSkipped, hooks: map[string]string{"a": "", "b": ""}, grace: 30, status: "skipped: no target container"}},
		{name: "containers annotation", pod: pgwPod(withAnn(annotations.AnnotationContainers, "sidecar,pushgateway"), func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s", "sidecar": "sleep 30s"}, status: "on pushgateway,sidecar"}},
		{name: "containers annotation naming nothing warns and falls back", pod: pgwPod(withAnn(annotations.AnnotationContainers, "nope")), pol: pol(),
			want: want{outcome: OutcomeInvalid, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45,
				warns: []string{`containers]: Invalid value: "nope": names no container of this pod ("nope"); must be a comma-separated list of: "pushgateway"`}}},
		{name: "containers annotation naming nothing is denied with reject", pod: pgwPod(withAnn(annotations.AnnotationContainers, "nope")), pol: pol(reject),
			want: want{outcome: OutcomeDenied, hooks: map[string]string{"pushgateway": ""}, grace: 30}},
		{name: "init containers never", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "pushgateway", Image: "pushgateway"}}
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}}},
		{name: "existing preStop kept, grace covers its sleep", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 60"}}}}
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": `exec "sh -c sleep 60"`}, grace: 75,
			status: "kept existing preStop on pushgateway; terminationGracePeriodSeconds 30->75"}},
		{name: "existing short sleep kept: grace covers it, not our default", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 7}}}
		}), pol: pol(), want: want{outcome: OutcomeUnchanged, hooks: map[string]string{"pushgateway": "sleep 7s"}, grace: 30,
			status: "kept existing preStop on pushgateway; terminationGracePeriodSeconds 30"}},
		{name: "existing httpGet kept: counts as the default sleep", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/quit"}}}
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": `httpGet "/quit"`}, grace: 45}},
		{name: "existing preStop replaced with a warning", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/quit"}}}
		}), pol: pol(replace), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45,
			status: "(replaced existing preStop on pushgateway)", warns: []string{`replaced the existing preStop hook of container "pushgateway" (httpGet "/quit") with sleep 30s`}}},
		{name: "postStart kept when preStop added", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}}
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45}},
		{name: "already mutated without status annotation", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: Hook("sleep", 30)}
			p.Spec.TerminationGracePeriodSeconds = i64(45)
		}), pol: pol(), want: want{outcome: OutcomeUnchanged, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 45,
			status: "already set: sleep 30s on pushgateway; terminationGracePeriodSeconds 45"}},
		{name: "huge kept sleep does not wrap the grace period", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1<<63 - 1}}}
		}), pol: pol(), want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 9223372036854775807s"}, grace: 1<<63 - 1}},
		{name: "sum capped at maxTerminationGracePeriod", pod: pgwPod(withAnn(annotations.AnnotationPreStopSleep, "300s", annotations.AnnotationShutdownBudget, "600s")), pol: pol(),
			want: want{outcome: OutcomeInjected, hooks: map[string]string{"pushgateway": "sleep 5m0s"}, grace: 600, status: "(capped by limits.maxTerminationGracePeriod)"}},
		{name: "bad settings warn, each falls back alone", pod: pgwPod(withAnn(annotations.AnnotationPreStopSleep, "1s", annotations.AnnotationShutdownBudget, "20s")), pol: pol(),
			want: want{outcome: OutcomeInvalid, hooks: map[string]string{"pushgateway": "sleep 30s"}, grace: 50,
				status: "; invalid: metadata.annotations[pushgateway-lifecycle.io/pre-stop-sleep]", warns: []string{`pre-stop-sleep]: Invalid value: "1s"`}}},
		{name: "bad settings denied with reject", pod: pgwPod(withAnn(annotations.AnnotationPreStopSleep, "abc")), pol: pol(reject),
			want: want{outcome: OutcomeDenied, hooks: map[string]string{"pushgateway": ""}, grace: 30, status: "-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.pod.DeepCopy()
			out, d := Mutate(tc.pod, tc.ns, tc.pol)
			if !equalPods(in, tc.pod) {
				t.Fatal("Mutate modified its input pod")
			}
			if d.Outcome != tc.want.outcome {
				t.Errorf("outcome = %s, want %s (status %q, problems %v)", d.Outcome, tc.want.outcome, d.Status, d.Problems)
			}
			for name, h := range tc.want.hooks {
				if got := hookOf(out, name); got != h {
					t.Errorf("container %s hook = %q, want %q", name, got, h)
				}
			}
			if tc.want.grace != 0 {
				if out.Spec.TerminationGracePeriodSeconds == nil || *out.Spec.TerminationGracePeriodSeconds != tc.want.grace {
					t.Errorf("grace = %v, want %d", ptrStr(out.Spec.TerminationGracePeriodSeconds), tc.want.grace)
				}
			}
			st, has := out.Annotations[annotations.AnnotationStatus]
			switch {
			case tc.want.status == "-" && has:
				t.Errorf("status annotation %q set, want none", st)
			case tc.want.status != "" && tc.want.status != "-" && !strings.Contains(st, tc.want.status):
				t.Errorf("status = %q, want it to contain %q", st, tc.want.status)
			}
			if len(d.Warnings) != len(tc.want.warns) {
				t.Fatalf("warnings = %q, want %d containing %q", d.Warnings, len(tc.want.warns), tc.want.warns)
			}
			for i, w := range tc.want.warns {
				if !strings.Contains(d.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, d.Warnings[i], w)
				}
			}
			if d.Outcome == OutcomeDenied && !strings.Contains(d.DenyMessage(), "metadata.annotations[") {
				t.Errorf("deny message %q does not name the annotation", d.DenyMessage())
			}
			// The API server refuses a preStop sleep longer than the grace period.
			if g := out.Spec.TerminationGracePeriodSeconds; g != nil {
				for _, c := range out.Spec.Containers {
					if c.Lifecycle != nil {
						if s, ok := HookSleepSeconds(c.Lifecycle.PreStop); ok && s > *g {
							t.Errorf("container %s sleeps %ds > grace %ds", c.Name, s, *g)
						}
					}
				}
			}
			// Idempotence: a second pass (reinvocation) changes nothing.
			again, d2 := Mutate(out, tc.ns, tc.pol)
			if d.Outcome != OutcomeDenied && (d2.Changed() || !equalPods(again, out)) {
				t.Errorf("second pass changed the pod: outcome %s, status %q -> %q", d2.Outcome, st, again.Annotations[annotations.AnnotationStatus])
			}
		})
	}
}

func ptrStr(p *int64) string {
	if p == nil {
		return "nil"
	}
	return strings.TrimSpace(strings.Repeat(" ", 0) + itoa(*p))
}

func itoa(n int64) string { return annotations.FormatSeconds(n) }

func equalPods(a, b *corev1.Pod) bool {
	// DeepEqual through the generated semantic helpers would pull in more; JSON is enough here.
	return podJSON(a) == podJSON(b)
}
