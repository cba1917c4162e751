package engine

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// probe is an httpGet probe on path with the given timing (0: field absent).
func probe(path string, delay, period int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(9091)}},
		InitialDelaySeconds: delay, PeriodSeconds: period, TimeoutSeconds: 10}
}

func withReadiness(p *corev1.Probe) func(*corev1.Pod) {
	return func(pod *corev1.Pod) { pod.Spec.Containers[0].ReadinessProbe = p }
}

func keepReadiness(p *policy.Policy) { p.Readiness = annotations.ReadinessKeep }

// TestReadiness: the target container's readinessProbe on /-/ready starts at once and runs
// every 2 s at most; every other probe, and the policy's or the pod's "keep", leave it alone.
func TestReadiness(t *testing.T) {
	type timing struct{ delay, period int32 }
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		pol  *policy.Policy
		// want is the readinessProbe timing of each named container after mutation.
		want    map[string]timing
		outcome Outcome
		// status is a substring of the status annotation; notStatus must not occur in it.
		status, notStatus string
		warns             int
	}{
		{name: "upstream chart timing 10/10 tuned to 0/2", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10))), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInjected,
			status: "terminationGracePeriodSeconds 30->45; readiness: initialDelaySeconds 10->0, periodSeconds 10->2 on pushgateway"},
		{name: "period absent counts as the default 10", pod: pgwPod(withReadiness(probe(ReadinessPath, 5, 0))), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInjected, status: "readiness: initialDelaySeconds 5->0, periodSeconds 10->2 on pushgateway"},
		{name: "shorter period 1 kept, only the delay goes", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 1))), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 1}}, outcome: OutcomeInjected, status: "readiness: initialDelaySeconds 10->0 on pushgateway", notStatus: "periodSeconds"},
		{name: "no delay, only the period goes", pod: pgwPod(withReadiness(probe(ReadinessPath, 0, 5))), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInjected, status: "readiness: periodSeconds 5->2 on pushgateway", notStatus: "initialDelaySeconds"},
		{name: "already 0/2: no readiness change", pod: pgwPod(withReadiness(probe(ReadinessPath, 0, 2))), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "readiness alone makes a protected pod injected", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: Hook("sleep", 30)}
			p.Spec.TerminationGracePeriodSeconds = i64(45)
		}), pol: pol(), want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInjected,
			status: "already set: sleep 30s on pushgateway; terminationGracePeriodSeconds 45; readiness: initialDelaySeconds 10->0, periodSeconds 10->2 on pushgateway"},
		{name: "already tuned and protected: unchanged", pod: pgwPod(withReadiness(probe(ReadinessPath, 0, 2)), func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: Hook("sleep", 30)}
			p.Spec.TerminationGracePeriodSeconds = i64(45)
		}), pol: pol(), want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeUnchanged, notStatus: "readiness"},
		{name: "path /metrics untouched", pod: pgwPod(withReadiness(probe("/metrics", 10, 10))), pol: pol(),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "path with a query untouched", pod: pgwPod(withReadiness(probe("/-/ready?x=1", 10, 10))), pol: pol(),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "tcpSocket untouched", pod: pgwPod(withReadiness(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9091)}},
			InitialDelaySeconds: 10, PeriodSeconds: 10})), pol: pol(),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "no probe: nothing to tune", pod: pgwPod(), pol: pol(), outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "policy keep", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10))), pol: pol(keepReadiness),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "annotation keep", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), withAnn(annotations.AnnotationReadiness, "keep")), pol: pol(),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "annotation tune follows the policy", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), withAnn(annotations.AnnotationReadiness, "tune")), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInjected, status: "readiness: initialDelaySeconds 10->0"},
		// The annotation is an opt-out only (annotations.Settings.ReadinessKeep): "tune" cannot
		// tune what the policy keeps.
		{name: "annotation tune does not override policy keep", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), withAnn(annotations.AnnotationReadiness, "tune")), pol: pol(keepReadiness),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness:"},
		{name: "invalid annotation warns and tunes (the policy default)", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), withAnn(annotations.AnnotationReadiness, "off")), pol: pol(),
			want: map[string]timing{"pushgateway": {0, 2}}, outcome: OutcomeInvalid, warns: 1,
			status: `readiness: initialDelaySeconds 10->0, periodSeconds 10->2 on pushgateway; invalid: metadata.annotations[pushgateway-lifecycle.io/readiness]: Invalid value: "off": must be "tune" or "keep"`},
		{name: "invalid annotation denied with reject", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), withAnn(annotations.AnnotationReadiness, "off")), pol: pol(reject),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeDenied},
		{name: "liveness on /-/ready untouched", pod: pgwPod(func(p *corev1.Pod) { p.Spec.Containers[0].LivenessProbe = probe(ReadinessPath, 10, 10) }), pol: pol(),
			outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "non-target container untouched", pod: pgwPod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox", ReadinessProbe: probe(ReadinessPath, 10, 10)})
		}), pol: pol(), want: map[string]timing{"sidecar": {10, 10}}, outcome: OutcomeInjected, notStatus: "readiness"},
		{name: "every target container is tuned", pod: pgwPod(withAnn(annotations.AnnotationContainers, "pushgateway,second"), withReadiness(probe(ReadinessPath, 10, 10)), func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "second", Image: "busybox", ReadinessProbe: probe(ReadinessPath, 0, 3)})
		}), pol: pol(), want: map[string]timing{"pushgateway": {0, 2}, "second": {0, 2}}, outcome: OutcomeInjected,
			status: "readiness: initialDelaySeconds 10->0, periodSeconds 10->2 on pushgateway; readiness: periodSeconds 3->2 on second"},
		{name: "opted out: untouched", pod: pgwPod(withReadiness(probe(ReadinessPath, 10, 10)), withAnn(annotations.AnnotationInject, "false")), pol: pol(),
			want: map[string]timing{"pushgateway": {10, 10}}, outcome: OutcomeSkipped},
		{name: "negative values are not raised", pod: pgwPod(withReadiness(probe(ReadinessPath, -1, -1))), pol: pol(),
			want: map[string]timing{"pushgateway": {-1, -1}}, outcome: OutcomeInjected, notStatus: "readiness"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.pod.DeepCopy()
			out, d := Mutate(tc.pod, "", tc.pol)
			if !equalPods(in, tc.pod) {
				t.Fatal("Mutate modified its input pod")
			}
			if d.Outcome != tc.outcome {
				t.Errorf("outcome = %s, want %s (status %q)", d.Outcome, tc.outcome, d.Status)
			}
			for _, c := range out.Spec.Containers {
				w, ok := tc.want[c.Name]
				if !ok {
					continue
				}
				if p := c.ReadinessProbe; p == nil || p.InitialDelaySeconds != w.delay || p.PeriodSeconds != w.period {
					t.Errorf("container %s readinessProbe = %+v, want initialDelaySeconds %d, periodSeconds %d", c.Name, p, w.delay, w.period)
				}
			}
			// Only the two timings change: path, port, timeout and the liveness probe stay.
			for i, c := range out.Spec.Containers {
				orig := in.Spec.Containers[i]
				if podJSON(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{LivenessProbe: c.LivenessProbe}}}}) !=
					podJSON(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{LivenessProbe: orig.LivenessProbe}}}}) {
					t.Errorf("container %s: livenessProbe changed", c.Name)
				}
				if p, o := c.ReadinessProbe, orig.ReadinessProbe; p != nil && o != nil {
					q := p.DeepCopy()
					q.InitialDelaySeconds, q.PeriodSeconds = o.InitialDelaySeconds, o.PeriodSeconds
					if podJSON(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{ReadinessProbe: q}}}}) !=
						podJSON(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{ReadinessProbe: o}}}}) {
						t.Errorf("container %s: readinessProbe changed beyond its timing: %+v", c.Name, p)
					}
				}
			}
			st := out.Annotations[annotations.AnnotationStatus]
			if tc.status != "" && !strings.Contains(st, tc.status) {
				t.Errorf("status = %q, want it to contain %q", st, tc.status)
			}
			if tc.notStatus != "" && strings.Contains(st, tc.notStatus) {
				t.Errorf("status = %q, want no %q", st, tc.notStatus)
			}
			// A probe change is always recorded, and nothing is recorded without one (no patch op).
			if (len(d.Probes) > 0) != strings.Contains(d.Status, "readiness: ") {
				t.Errorf("probe changes %+v, status %q", d.Probes, d.Status)
			}
			if len(d.Warnings) != tc.warns {
				t.Errorf("warnings = %q, want %d", d.Warnings, tc.warns)
			}
			// Idempotence: a second pass (reinvocation) changes nothing.
			if again, d2 := Mutate(out, "", tc.pol); d.Outcome != OutcomeDenied && (d2.Changed() || len(d2.Probes) > 0 || !equalPods(again, out)) {
				t.Errorf("second pass changed the pod: outcome %s, probes %+v", d2.Outcome, d2.Probes)
			}
		})
	}
}
