package check

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

func stored(mut func(*corev1.Pod)) *corev1.Pod {
	p := Pod(Options{Namespace: "ns", Container: "pushgateway", Image: "img"})
	p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	if mut != nil {
		mut(p)
	}
	return p
}

func withHook(seconds, grace int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}}
		p.Spec.TerminationGracePeriodSeconds = ptr.To(grace)
		p.Annotations[annotations.AnnotationStatus] = "injected: sleep 30s on pushgateway"
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		wantErr string
		want    Result
	}{
		{"mutated", stored(withHook(30, 45)), "", Result{Hook: "sleep 30s", Grace: 45, Status: "injected: sleep 30s on pushgateway"}},
		{"exec hook", stored(func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "sleep 30"}}}}
			p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](45)
		}), "", Result{Hook: "exec [/bin/sh -c sleep 30]", Grace: 45}},
		{"untouched", stored(nil), "nothing mutated it", Result{}},
		{"skipped with a reason", stored(func(p *corev1.Pod) { p.Annotations[annotations.AnnotationStatus] = "skipped: opted out" }), `status says "skipped: opted out"`, Result{}},
		{"hook without its grace", stored(withHook(30, 30)), "does not cover the preStop sleep 30s", Result{}},
		{"no grace at all", stored(func(p *corev1.Pod) { withHook(30, 45)(p); p.Spec.TerminationGracePeriodSeconds = nil }), "without terminationGracePeriodSeconds", Result{}},
		{"container gone", stored(func(p *corev1.Pod) { p.Spec.Containers[0].Name = "other" }), `without its container "pushgateway"`, Result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Judge(tc.pod, "pushgateway")
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Judge = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Judge err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateNamesEveryBadFlag(t *testing.T) {
	err := Options{Timeout: -1, Interval: 0}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"--namespace", "--timeout: -1ns", "--interval: 0s", "--container and --image"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
	o := Defaults()
	o.Namespace = "ns"
	if err := o.Validate(); err != nil {
		t.Errorf("the defaults with a namespace: %v", err)
	}
}

// Run retries until the API server returns the mutation, sends a dry-run every time and
// reports each new reason once.
func TestRunRetriesUntilMutated(t *testing.T) {
	cs := fake.NewClientset()
	calls := 0
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		ca := a.(k8stesting.CreateActionImpl)
		if dr := ca.CreateOptions.DryRun; len(dr) != 1 || dr[0] != "All" {
			t.Errorf("create without dry-run: %v", dr)
		}
		p := ca.GetObject().(*corev1.Pod).DeepCopy()
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		if calls >= 3 {
			withHook(30, 45)(p)
		}
		return true, p, nil
	})
	o := Defaults()
	o.Namespace, o.Interval = "ns", time.Millisecond
	var log strings.Builder
	o.Out = &log
	res, err := Run(context.Background(), cs, o)
	if err != nil || res.Attempts != 3 || res.Hook != "sleep 30s" {
		t.Fatalf("Run = %+v, %v; want success at attempt 3", res, err)
	}
	if n := strings.Count(log.String(), "nothing mutated it"); n != 1 {
		t.Errorf("the same reason reported %d times, want once:\n%s", n, log.String())
	}
	o.Timeout = 20 * time.Millisecond
	calls = -1 << 30
	if _, err := Run(context.Background(), cs, o); err == nil || !strings.Contains(err.Error(), "last: the pod came back without a preStop hook") {
		t.Errorf("Run with no mutation: %v", err)
	}
}

// An attempt that the check's own deadline cuts short must not hide the reason before it:
// "context deadline exceeded" tells an operator nothing (CI saw exactly this on a slow machine).
func TestRunKeepsTheReasonBeforeItsDeadline(t *testing.T) {
	cs := fake.NewClientset()
	calls := 0
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if calls == 1 {
			return true, nil, errors.New(`failed calling webhook "startup-check.pushgateway-lifecycle.io": x509: certificate signed by unknown authority`)
		}
		time.Sleep(50 * time.Millisecond) // outlives the check's deadline, as a hung call does
		return true, nil, context.DeadlineExceeded
	})
	o := Defaults()
	o.Namespace, o.Interval, o.Timeout = "ns", time.Millisecond, 30*time.Millisecond
	_, err := Run(context.Background(), cs, o)
	if err == nil || !strings.Contains(err.Error(), "x509") || strings.Contains(err.Error(), "deadline") {
		t.Errorf("Run = %v; want the x509 reason, not the deadline", err)
	}
	if err != nil && !strings.Contains(err.Error(), "(1 attempts)") {
		t.Errorf("Run = %v; want the one completed attempt counted", err)
	}
}
