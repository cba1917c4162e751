package engine

import "testing"

// TestLookupWorkload: built-in kinds match by kind whatever their API version, custom kinds
// only with their group, and a custom group's other kinds fall back to the built-in names.
func TestLookupWorkload(t *testing.T) {
	for _, tc := range []struct {
		apiVersion, kind, ptr string
		ok                    bool
	}{
		{"v1", "Pod", "", true},
		{"v1", "PodTemplate", "/template", true},
		{"extensions/v1beta1", "Deployment", "/spec/template", true},
		{"batch/v1", "CronJob", "/spec/jobTemplate/spec/template", true},
		{"argoproj.io/v1alpha1", "Rollout", "/spec/template", true},
		{"apps.kruise.io/v1alpha1", "CloneSet", "/spec/template", true},
		{"apps.kruise.io/v1beta1", "StatefulSet", "/spec/template", true}, // OpenKruise Advanced StatefulSet
		{"apps.kruise.io/v1alpha1", "DaemonSet", "/spec/template", true},
		{"apps.kruise.io/v1alpha1", "argoproj.io/Rollout", "", false},
		{"rollouts.kruise.io/v1beta1", "Rollout", "", false},
		{"", "Rollout", "", false},
		{"argoproj.io/v1alpha1", "Workflow", "", false},
		{"serving.knative.dev/v1", "Service", "", false},
	} {
		w, ok := LookupWorkload(tc.apiVersion, tc.kind)
		ptr := w.Template
		if ptr != tc.ptr || ok != tc.ok {
			t.Errorf("%s %s: %q %v, want %q %v", tc.apiVersion, tc.kind, ptr, ok, tc.ptr, tc.ok)
		}
	}
}

// TestValidatedTemplateCEL: the admission-policy mode reads the same pod template the
// validator does, for every validated kind.
func TestValidatedTemplateCEL(t *testing.T) {
	want := "object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template : object.spec.template"
	if got := ValidatedTemplateCEL("object"); got != want {
		t.Errorf("ValidatedTemplateCEL = %q, want %q", got, want)
	}
}
