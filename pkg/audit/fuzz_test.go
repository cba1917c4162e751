package audit

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// FuzzClassifyAdmitted checks the property the audit rests on: a pod as the webhook stores it
// (engine.Mutate, whatever its annotations and whatever hook it came with) is never reported
// Unprotected or Drifted under the same policy, and every pod gets a known state.
func FuzzClassifyAdmitted(f *testing.F) {
	f.Add("30s", "15s", "", "sleep", "", "", int64(-1), int64(0), false)
	f.Add("banana", "-1s", "1s", "exec", "nope", "false", int64(30), int64(20), true)
	f.Add("5m", "10m", "", "auto", "pushgateway,sidecar", "true", int64(700), int64(400), false)
	f.Add("", "", "45", "", " , ", "", int64(0), int64(-1), true)
	policies := []*policy.Policy{policy.Default(), mustParse(f, "existingPreStop: replace\nonInvalid: reject\n"),
		mustParse(f, "defaults:\n  preStopAction: exec\n  shutdownBudget: 0s\n")}
	f.Fuzz(func(t *testing.T, sleep, budget, grace, action, containers, inject string, podGrace, hookSleep int64, second bool) {
		ann := map[string]string{}
		for k, v := range map[string]string{
			annotations.AnnotationPreStopSleep: sleep, annotations.AnnotationShutdownBudget: budget,
			annotations.AnnotationTerminationGracePeriod: grace, annotations.AnnotationPreStopAction: action,
			annotations.AnnotationContainers: containers, annotations.AnnotationInject: inject,
		} {
			if v != "" {
				ann[k] = v
			}
		}
		names := []string{"pushgateway"}
		if second {
			names = append(names, "sidecar")
		}
		pod := chartPod(ann, names...)
		if podGrace >= 0 {
			pod.Spec.TerminationGracePeriodSeconds = &podGrace
		}
		if hookSleep > 0 {
			pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: hookSleep}}}
		}
		for _, pol := range policies {
			out, d := engine.Mutate(pod, pod.Namespace, pol)
			v := Classify(pod, ptr(true), pol)
			if v.State.Rank() >= len(States) {
				t.Fatalf("unknown state %q", v.State)
			}
			if d.Outcome == engine.OutcomeDenied {
				continue // never stored
			}
			got := Classify(out, ptr(true), pol)
			if got.State == StateUnprotected || got.State == StateDrifted {
				t.Fatalf("admitted pod (outcome %s, status %q) classified %s: %s", d.Outcome, d.Status, got.State, got.Reason)
			}
		}
	})
}

func mustParse(f *testing.F, doc string) *policy.Policy {
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		f.Fatal(err)
	}
	return p
}
