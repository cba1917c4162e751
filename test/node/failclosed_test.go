package node

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

var failClosed = flag.Bool("fail-closed", false, "measure webhook.failurePolicy=Fail on the real node: one replica SIGKILLed, then both gone, while pods are created (make proof-fail-closed; not in make test)")

// TestNodeFailClosed measures the trade-off of webhook.failurePolicy: Fail (issue 26): with
// one replica SIGKILLed while pods are created, and with no replica, how many creations are
// refused, how many pods are created unmutated (must be 0), and how long a ReplicaSet takes
// until all its pods exist, retrying what was refused.
func TestNodeFailClosed(t *testing.T) {
	if !*failClosed {
		t.Skip("run with -fail-closed (make proof-fail-closed)")
	}
	n, _ := startNode(t)
	ctx := context.Background()
	if out, err := n.InstallChart(ctx, t.TempDir(), "--set", "webhook.failurePolicy=Fail"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pods := waitReady(t, n, harness.ChartNamespace, webhookSelector, 2, 3*time.Minute)
	kubectl(t, n, nil, "create", "namespace", "monitoring")
	kubectl(t, n, nil, "label", "namespace", "monitoring", "pushgateway-lifecycle.io/injection=enabled")

	// Direct creations, one every 100 ms for 17 s, SIGKILL of one replica after 2 s.
	victim := pods[0]
	r := createRefused(t, n, "sigkill", func() {
		id := strings.TrimPrefix(victim.Status.ContainerStatuses[0].ContainerID, "containerd://")
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if out, err := n.Ctr(kctx, "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
			t.Errorf("SIGKILL through containerd: %v %s", err, out)
		}
	})
	t.Logf("failurePolicy Fail, one replica SIGKILLed: %d attempts, %d refused, %d created, %d created unmutated", r.attempts, r.refused, r.created, r.unmutated)
	if r.unmutated != 0 {
		t.Errorf("%d pods created unmutated under failurePolicy Fail, want 0", r.unmutated)
	}

	// A ReplicaSet's view: a Deployment scaled to 30 right after a SIGKILL.
	waitReady(t, n, harness.ChartNamespace, webhookSelector, 2, 3*time.Minute)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "failclosed", Namespace: "monitoring"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "prometheus-pushgateway", "outage": "deployment"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "prometheus-pushgateway", "outage": "deployment"}},
				Spec:       outagePodSpec(),
			},
		},
	}
	if _, err := n.Clientset.AppsV1().Deployments("monitoring").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	scaleAfter := func(name string, kill func()) (time.Duration, int) {
		kill()
		start := time.Now()
		kubectl(t, n, nil, "-n", "monitoring", "scale", "deployment", "failclosed", "--replicas=30")
		deadline := start.Add(5 * time.Minute)
		for {
			list, err := n.Clientset.CoreV1().Pods("monitoring").List(ctx, metav1.ListOptions{LabelSelector: "outage=deployment"})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) >= 30 {
				took := time.Since(start)
				unmutated := 0
				for _, p := range list.Items {
					if c := p.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
						unmutated++
					}
				}
				return took, unmutated
			}
			if time.Now().After(deadline) {
				t.Logf("%s: %d of 30 pods after 5 min", name, len(list.Items))
				return -1, 0
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	pods = waitReady(t, n, harness.ChartNamespace, webhookSelector, 2, 3*time.Minute)
	took, unmutated := scaleAfter("sigkill", func() {
		id := strings.TrimPrefix(pods[0].Status.ContainerStatuses[0].ContainerID, "containerd://")
		if out, err := n.Ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
			t.Errorf("SIGKILL: %v %s", err, out)
		}
	})
	failed := failedCreates(t, n)
	t.Logf("failurePolicy Fail, Deployment scaled 0 -> 30 right after one replica was SIGKILLed: all 30 pods exist after %.1f s, %d unmutated, %d FailedCreate events", took.Seconds(), unmutated, failed)
	if unmutated != 0 {
		t.Errorf("%d unmutated", unmutated)
	}

	// No replica at all: every creation is refused; the ReplicaSet retries until one is back.
	kubectl(t, n, nil, "-n", "monitoring", "scale", "deployment", "failclosed", "--replicas=0")
	waitGone(t, n, "monitoring", "outage=deployment", 2*time.Minute)
	kubectl(t, n, nil, "-n", harness.ChartNamespace, "scale", "deployment", harness.ChartReleaseName, "--replicas=0")
	waitGone(t, n, harness.ChartNamespace, webhookSelector, 2*time.Minute)
	r = createRefused(t, n, "none", func() {})
	t.Logf("failurePolicy Fail, no replica: %d attempts, %d refused, %d created", r.attempts, r.refused, r.created)
	if r.created != 0 {
		t.Errorf("%d pods created with no webhook under failurePolicy Fail, want 0", r.created)
	}
	kubectl(t, n, nil, "-n", "monitoring", "scale", "deployment", "failclosed", "--replicas=30")
	time.Sleep(20 * time.Second)
	list, err := n.Clientset.CoreV1().Pods("monitoring").List(ctx, metav1.ListOptions{LabelSelector: "outage=deployment"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failurePolicy Fail, no replica: a Deployment scaled to 30 has %d pods after 20 s (%d FailedCreate events so far)", len(list.Items), failedCreates(t, n))
	start := time.Now()
	kubectl(t, n, nil, "-n", harness.ChartNamespace, "scale", "deployment", harness.ChartReleaseName, "--replicas=2")
	for {
		list, err := n.Clientset.CoreV1().Pods("monitoring").List(ctx, metav1.ListOptions{LabelSelector: "outage=deployment"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) >= 30 {
			t.Logf("failurePolicy Fail: webhook scaled back up; all 30 pods exist %.1f s later (the ReplicaSet's retry backoff included)", time.Since(start).Seconds())
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("%d of 30 pods 5 min after the webhook was scaled back up", len(list.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type refusals struct{ attempts, refused, created, unmutated int }

// createRefused is createDuring for failurePolicy Fail: a refused creation is counted, not an error.
func createRefused(t *testing.T, n *harness.Node, name string, disrupt func()) refusals {
	t.Helper()
	ctx := context.Background()
	var r refusals
	start := time.Now()
	disrupted := false
	for i := 0; time.Since(start) < 17*time.Second; i++ {
		if !disrupted && time.Since(start) > 2*time.Second {
			disrupt()
			disrupted = true
		}
		r.attempts++
		pod := outagePod(fmt.Sprintf("fc-%s-%03d", name, i), "fc-"+name)
		got, err := n.Clientset.CoreV1().Pods("monitoring").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			r.refused++
		} else {
			r.created++
			if c := got.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
				r.unmutated++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = n.Clientset.CoreV1().Pods("monitoring").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "outage=fc-" + name})
	return r
}

func failedCreates(t *testing.T, n *harness.Node) int {
	t.Helper()
	evs, err := n.Clientset.CoreV1().Events("monitoring").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, e := range evs.Items {
		if e.Reason == "FailedCreate" {
			c += int(max(e.Count, 1))
		}
	}
	return c
}
