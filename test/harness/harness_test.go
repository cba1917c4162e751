package harness

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The harness itself: a control plane with kube-controller-manager turns a Deployment into
// Pods, kubectl works with the written kubeconfig, a webhook registered through the harness is
// called by the apiserver, and Stop leaves no process behind.
func TestControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cp, err := Start(Options{ControllerManager: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()
	pids := append([]int(nil), cp.pids...)
	pids = append(pids, cp.ControllerManager.Pid())
	if len(pids) < 3 {
		t.Errorf("expected etcd, kube-apiserver and kube-controller-manager to be watched, got pids %v", pids)
	}

	out, _, err := cp.Kubectl(ctx, nil, "get", "namespace", "default", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "namespace/default" {
		t.Fatalf("kubectl get namespace default: %q, %v", out, err)
	}

	t.Run("controller-manager creates pods", func(t *testing.T) {
		if err := cp.CreateNamespace(ctx, "harness", true); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{"app": "harness"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "harness", Namespace: "harness"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
				},
			},
		}
		if _, err := cp.Clientset.AppsV1().Deployments("harness").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods, err := cp.WaitForPods(ctx, "harness", "app=harness", 2, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "ReplicaSet" {
				t.Errorf("pod %s: owner %v, want a ReplicaSet", p.Name, p.OwnerReferences)
			}
		}
	})

	t.Run("registered webhook is called", func(t *testing.T) {
		tw := StartTestWebhookT(t, cp.CertDir, func(pod *corev1.Pod) []PatchOp {
			return []PatchOp{{Op: "add", Path: "/metadata/annotations", Value: map[string]string{
				"pushgateway-lifecycle.io/status": "probe",
			}}}
		})
		cfg := DefaultWebhookConfigs()
		cfg.Validating = nil
		cfg = cfg.PointAt(tw.URL, cp.CAData)
		if err := cp.Register(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := cp.WaitForWebhook(ctx, "harness", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if tw.Calls.Load() == 0 {
			t.Error("the test webhook counted no call")
		}
		// Not opted in: the namespaceSelector keeps the webhook out.
		if err := cp.CreateNamespace(ctx, "harness-out", false); err != nil {
			t.Fatal(err)
		}
		got, err := cp.Clientset.CoreV1().Pods("harness-out").Create(ctx, ProbePod("harness-out"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Annotations["pushgateway-lifecycle.io/status"]; ok {
			t.Error("pod in a namespace without the injection label was mutated")
		}
		if err := cp.Unregister(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := cp.WaitForWebhookGone(ctx, "harness", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	stopped = true
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, pid := range pids {
		// Signal 0 checks existence; a zombie would still count, but all are reaped by Wait.
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still alive after Stop", pid)
		}
	}
}
