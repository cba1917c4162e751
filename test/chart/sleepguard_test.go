package chart

import (
	"reflect"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// The sleep-action guard (docs/versions.md) is on by default and denies; it can report only,
// or be left out. Its behaviour against a real API server with the gate off is test/versions'.
func TestSleepActionGuardRender(t *testing.T) {
	t.Run("default: deny, on the status annotation the webhook writes", func(t *testing.T) {
		r := render(t, nil)
		var p admissionv1.ValidatingAdmissionPolicy
		r.named(t, "ValidatingAdmissionPolicy", "sleep-action-guard", &p)
		var b admissionv1.ValidatingAdmissionPolicyBinding
		r.named(t, "ValidatingAdmissionPolicyBinding", "sleep-action-guard", &b)
		if b.Spec.PolicyName != p.Name {
			t.Errorf("binding names policy %q, want %q", b.Spec.PolicyName, p.Name)
		}
		if len(b.Spec.ValidationActions) != 1 || b.Spec.ValidationActions[0] != admissionv1.Deny {
			t.Errorf("validationActions %v, want [Deny]", b.Spec.ValidationActions)
		}
		if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionv1.Ignore {
			t.Errorf("failurePolicy %v, want Ignore", p.Spec.FailurePolicy)
		}
		if len(p.Spec.MatchConditions) != 1 || !strings.Contains(p.Spec.MatchConditions[0].Expression, annotations.AnnotationStatus) {
			t.Errorf("matchConditions %+v, want one on %s", p.Spec.MatchConditions, annotations.AnnotationStatus)
		}
		if len(p.Spec.Validations) != 1 || !strings.Contains(p.Spec.Validations[0].Message, "preStopAction: exec") {
			t.Errorf("validations %+v, want one whose message names preStopAction: exec", p.Spec.Validations)
		}
	})
	t.Run("report only", func(t *testing.T) {
		r := render(t, map[string]any{"sleepActionGuard": map[string]any{"validationActions": []string{"Warn", "Audit"}}})
		var b admissionv1.ValidatingAdmissionPolicyBinding
		r.named(t, "ValidatingAdmissionPolicyBinding", "sleep-action-guard", &b)
		if len(b.Spec.ValidationActions) != 2 || b.Spec.ValidationActions[0] != admissionv1.Warn || b.Spec.ValidationActions[1] != admissionv1.Audit {
			t.Errorf("validationActions %v, want [Warn Audit]", b.Spec.ValidationActions)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		r := render(t, map[string]any{"sleepActionGuard": map[string]any{"enabled": false}})
		n := 0
		for _, o := range append(r.all("ValidatingAdmissionPolicy"), r.all("ValidatingAdmissionPolicyBinding")...) {
			if strings.HasSuffix(o.GetName(), "sleep-action-guard") {
				n++
			}
		}
		if n != 0 {
			t.Errorf("%d guard objects rendered with enabled: false", n)
		}
	})
}

// config/default carries the same guard (config/sleepguard), bound to its prefixed name.
func TestSleepActionGuardKustomize(t *testing.T) {
	k, c := kustomize(t, "config/default"), render(t, nil)
	var kp, cp admissionv1.ValidatingAdmissionPolicy
	k.named(t, "ValidatingAdmissionPolicy", "sleep-action-guard", &kp)
	c.named(t, "ValidatingAdmissionPolicy", "sleep-action-guard", &cp)
	if !reflect.DeepEqual(kp.Spec, cp.Spec) {
		t.Errorf("guard policies differ:\nkustomize %+v\nchart     %+v", kp.Spec, cp.Spec)
	}
	var kb, cb admissionv1.ValidatingAdmissionPolicyBinding
	k.named(t, "ValidatingAdmissionPolicyBinding", "sleep-action-guard", &kb)
	c.named(t, "ValidatingAdmissionPolicyBinding", "sleep-action-guard", &cb)
	if kb.Spec.PolicyName != kp.Name {
		t.Errorf("kustomize binding names policy %q, want %q", kb.Spec.PolicyName, kp.Name)
	}
	if !reflect.DeepEqual(kb.Spec.ValidationActions, cb.Spec.ValidationActions) {
		t.Errorf("validationActions: kustomize %v, chart %v", kb.Spec.ValidationActions, cb.Spec.ValidationActions)
	}
}
