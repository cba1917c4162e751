package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

type fakeDrainer struct {
	err     error
	drained []string
}

func (f *fakeDrainer) Drain(_ context.Context, p *corev1.Pod) error {
	f.drained = append(f.drained, p.Namespace+"/"+p.Name)
	return f.err
}

// TestPodDrainer: the drain webhook writes the condition for the DELETE of a live pod with the
// gate, nothing else (a dry run, a terminating pod, one already drained, one without the
// gate, another operation), and never denies, not even when the write fails.
func TestPodDrainer(t *testing.T) {
	gated := func(mut ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pgw", UID: "u"}}
		p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}, {ConditionType: annotations.ConditionAcceptingPushes}}
		for _, m := range mut {
			m(p)
		}
		return p
	}
	body := func(op admissionv1.Operation, old *corev1.Pod, dryRun bool) []byte {
		req := map[string]any{
			"uid": "u-1", "kind": map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": "ns", "name": "pgw", "operation": op, "dryRun": dryRun, "oldObject": old,
		}
		b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := metav1.Now()
	for _, tc := range []struct {
		name    string
		body    []byte
		err     error
		drained bool
		warning string
	}{
		{name: "the DELETE of a live pod with the gate", body: body(admissionv1.Delete, gated(), false), drained: true},
		{name: "a dry run", body: body(admissionv1.Delete, gated(), true)},
		{name: "already terminating", body: body(admissionv1.Delete, gated(func(p *corev1.Pod) { p.DeletionTimestamp = &now }), false)},
		{name: "already drained", body: body(admissionv1.Delete, gated(func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: annotations.ConditionAcceptingPushes, Status: corev1.ConditionFalse}}
		}), false)},
		{name: "no gate", body: body(admissionv1.Delete, gated(func(p *corev1.Pod) { p.Spec.ReadinessGates = p.Spec.ReadinessGates[:1] }), false)},
		{name: "an UPDATE", body: body(admissionv1.Update, gated(), false)},
		{name: "the write fails: allowed, with a warning", body: body(admissionv1.Delete, gated(), false), err: errors.New("forbidden"), drained: true,
			warning: `the drain of pod pgw failed ("forbidden")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDrainer{err: tc.err}
			_, rv := post(t, &PodDrainer{Drainer: f, Log: logr.Discard()}, tc.body, "application/json")
			if !rv.Response.Allowed {
				t.Fatalf("denied: %+v", rv.Response.Result)
			}
			if got := len(f.drained) == 1; got != tc.drained {
				t.Fatalf("drained %v, want %v", f.drained, tc.drained)
			}
			if tc.drained && f.drained[0] != "ns/pgw" {
				t.Errorf("drained %v, want ns/pgw (the request's namespace)", f.drained)
			}
			warned := len(rv.Response.Warnings) == 1 && strings.Contains(rv.Response.Warnings[0], tc.warning)
			if (tc.warning != "") != warned {
				t.Errorf("warnings %q, want one containing %q", rv.Response.Warnings, tc.warning)
			}
		})
	}
}
