package engine

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDecideAccepting: terminating is False; alive is True, except for DrainHold after a
// drained DELETE (the webhook's False), and a False of another reason is not the drain's.
func TestDecideAccepting(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	alive := &corev1.Pod{}
	deleted := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &metav1.Time{Time: t0.Add(45 * time.Second)}}}
	drained := DrainingCondition(t0)
	other := corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "ByHand", LastTransitionTime: metav1.NewTime(t0)}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		cur   *corev1.PodCondition
		now   time.Duration
		want  corev1.ConditionStatus
		until time.Duration // 0: none
	}{
		{name: "alive, never set", pod: alive, want: corev1.ConditionTrue},
		{name: "terminating", pod: deleted, want: corev1.ConditionFalse},
		{name: "terminating, drained at its DELETE", pod: deleted, cur: &drained, now: time.Minute, want: corev1.ConditionFalse},
		{name: "drained, its deletion not seen yet", pod: alive, cur: &drained, now: time.Second, want: corev1.ConditionFalse, until: DrainHold},
		{name: "drained, and still alive after the hold", pod: alive, cur: &drained, now: DrainHold, want: corev1.ConditionTrue},
		{name: "False for another reason", pod: alive, cur: &other, now: time.Second, want: corev1.ConditionTrue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := DecideAccepting(tc.pod, tc.cur, t0.Add(tc.now))
			if a.Status != tc.want {
				t.Errorf("status %s, want %s (%s)", a.Status, tc.want, a.Message)
			}
			var want time.Time
			if tc.until > 0 {
				want = t0.Add(tc.until)
			}
			if !a.Until.Equal(want) {
				t.Errorf("until %s, want %s", a.Until, want)
			}
			if a.Reason == "" || a.Message == "" {
				t.Errorf("reason %q, message %q: both must say why", a.Reason, a.Message)
			}
		})
	}
}
