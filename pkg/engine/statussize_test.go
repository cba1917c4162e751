package engine

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// TestStatusAnnotationSizeLimit: the status annotation never takes a pod's annotations over the
// API server's limit (review of issue 26: 262183 > 262144 bytes for a pod 64 bytes under it).
func TestStatusAnnotationSizeLimit(t *testing.T) {
	if TotalAnnotationSizeLimit != apivalidation.TotalAnnotationSizeLimitB {
		t.Fatalf("TotalAnnotationSizeLimit = %d, apimachinery's is %d", TotalAnnotationSizeLimit, apivalidation.TotalAnnotationSizeLimitB)
	}
	const key = "example.com/config"
	// room is what the pod's annotations leave free below the limit.
	filled := func(room int, mod ...func(*corev1.Pod)) *corev1.Pod {
		p := pgwPod(append(mod, withAnn(key, ""))...)
		used := 0
		for k, v := range p.Annotations {
			used += len(k) + len(v)
		}
		p.Annotations[key] = strings.Repeat("x", TotalAnnotationSizeLimit-used-room)
		return p
	}
	full := "injected: sleep 30s on pushgateway; terminationGracePeriodSeconds 30->45"
	exact := len(annotations.AnnotationStatus) + len(full)
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		wantStatus bool
	}{
		{name: "64 bytes under the limit: status left out", pod: filled(64)},
		{name: "one byte short of the status: left out", pod: filled(exact - 1)},
		{name: "exactly room for the status: written", pod: filled(exact), wantStatus: true},
		{name: "skip with a recorded reason, near the limit: left out", pod: filled(10, withAnn(annotations.AnnotationInject, "false"))},
		{name: "an old status is replaced only when the new one fits",
			pod: filled(10, withAnn(annotations.AnnotationStatus, "x"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := apivalidation.ValidateAnnotationsSize(tc.pod.Annotations); err != nil {
				t.Fatalf("input already invalid: %v", err)
			}
			out, d := Mutate(tc.pod, "ns", pol())
			if err := apivalidation.ValidateAnnotationsSize(out.Annotations); err != nil {
				t.Errorf("the engine made a valid pod invalid: %v", err)
			}
			if d.Outcome != OutcomeSkipped && hookOf(out, "pushgateway") != "sleep 30s" {
				t.Errorf("hook = %q: the size limit must not cost the pod its hook", hookOf(out, "pushgateway"))
			}
			if got := out.Annotations[annotations.AnnotationStatus] == d.Status; got != tc.wantStatus {
				t.Errorf("status written = %v, want %v (%q)", got, tc.wantStatus, out.Annotations[annotations.AnnotationStatus])
			}
			if d.StatusOmitted == tc.wantStatus {
				t.Errorf("StatusOmitted = %v, want %v", d.StatusOmitted, !tc.wantStatus)
			}
			warned := false
			for _, w := range d.Warnings {
				warned = warned || strings.Contains(w, "status annotation "+annotations.AnnotationStatus+" left out")
			}
			if warned == tc.wantStatus {
				t.Errorf("warnings = %q, want a warning about the status: %v", d.Warnings, !tc.wantStatus)
			}
			// A second pass stays within the limit too. It may write a status that the first
			// pass left out, when its text is shorter ("already set: ..." against "injected:
			// ..."): nothing on the pod tells a status left out from one never written.
			again, d2 := Mutate(out, "ns", pol())
			if err := apivalidation.ValidateAnnotationsSize(again.Annotations); err != nil {
				t.Errorf("second pass: %v", err)
			}
			if d2.Changed() {
				delete(again.Annotations, annotations.AnnotationStatus)
				delete(out.Annotations, annotations.AnnotationStatus)
				if len(d2.Containers) > 0 || d2.SetsGrace() || !equalPods(again, out) {
					t.Errorf("second pass changed more than the status: %s", d2.Outcome)
				}
			}
		})
	}
}
