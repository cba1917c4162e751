package engine

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// TestDecideAccepting: a terminating pod stops taking pushes drainWindow before the sleep of
// its target ends, counted from the start of its termination; never before that start.
func TestDecideAccepting(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	pod := func(sleep *int64, grace int64, deleted bool) *corev1.Pod {
		p := &corev1.Pod{}
		p.Name, p.Namespace = "pgw", "monitoring"
		p.Labels = map[string]string{annotations.LabelAppName: "prometheus-pushgateway"}
		c := corev1.Container{Name: "pushgateway", Image: "prom/pushgateway:v1.11.3"}
		if sleep != nil {
			c.Lifecycle = &corev1.Lifecycle{PreStop: Hook(annotations.ActionSleep, *sleep)}
		}
		p.Spec.Containers = []corev1.Container{c, {Name: "sidecar", Image: "busybox",
			Lifecycle: &corev1.Lifecycle{PreStop: Hook(annotations.ActionSleep, 2)}}}
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](45)
		if deleted {
			p.DeletionTimestamp = &metav1.Time{Time: t0.Add(time.Duration(grace) * time.Second)}
			p.DeletionGracePeriodSeconds = ptr.To(grace)
		}
		return p
	}
	pol := policy.Default()
	pol.Handoff.DrainWindow = 10
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		now  time.Duration // after the termination began
		want corev1.ConditionStatus
		at   time.Duration // after the termination began; -1: none
	}{
		{name: "running", pod: pod(ptr.To[int64](30), 0, false), want: corev1.ConditionTrue, at: -1},
		{name: "terminating, before the window", pod: pod(ptr.To[int64](30), 45, true), now: 19 * time.Second, want: corev1.ConditionTrue, at: 20 * time.Second},
		{name: "terminating, in the window", pod: pod(ptr.To[int64](30), 45, true), now: 20 * time.Second, want: corev1.ConditionFalse, at: 20 * time.Second},
		{name: "a grace period shorter than the sleep ends it first", pod: pod(ptr.To[int64](30), 15, true), now: 4 * time.Second, want: corev1.ConditionTrue, at: 5 * time.Second},
		{name: "a window longer than the sleep: at once", pod: pod(ptr.To[int64](8), 45, true), now: 0, want: corev1.ConditionFalse, at: 0},
		{name: "no readable sleep on the target: at once (the sidecar's does not count)", pod: pod(nil, 45, true), now: 0, want: corev1.ConditionFalse, at: 0},
		{name: "delete with grace 0", pod: pod(ptr.To[int64](30), 0, true), now: 0, want: corev1.ConditionFalse, at: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := DecideAccepting(tc.pod, pol, t0.Add(tc.now))
			if a.Status != tc.want {
				t.Errorf("status %s, want %s (%s)", a.Status, tc.want, a.Message)
			}
			switch {
			case tc.at < 0 && !a.At.IsZero():
				t.Errorf("at %s, want none", a.At)
			case tc.at >= 0 && !a.At.Equal(t0.Add(tc.at)):
				t.Errorf("at %s, want %s", a.At, t0.Add(tc.at))
			}
			if a.Message == "" || a.Reason == "" {
				t.Errorf("reason %q, message %q: both must say why", a.Reason, a.Message)
			}
		})
	}
}
