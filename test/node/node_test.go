// Package node runs the product on a real node: etcd, kube-apiserver, the controllers and the
// scheduler, containerd with runc and the CNI bridge, the kubelet and kube-proxy, all started by
// test/harness in namespaces and cgroups of their own (see docs/real-node.md). The webhook runs
// as the chart's pods from its own image; the Pushgateway runs as the upstream chart deploys it;
// the kubelet runs the injected hook. Needs root; skipped otherwise (PGL_REQUIRE_NODE=1 makes
// that a failure, as `make test-node` sets it).
package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startNode builds the images and starts a node with them imported.
func startNode(t *testing.T) (*harness.Node, string) {
	t.Helper()
	if err := harness.NodeSupported(); err != nil {
		if os.Getenv("PGL_REQUIRE_NODE") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	pgw, err := harness.PushgatewayImage()
	if err != nil {
		t.Fatal(err)
	}
	wh, ref, err := harness.WebhookImage(os.Getenv("PGL_BINARY"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n := harness.NewNode(t, harness.NodeOptions{Images: []string{pgw, wh}, Progress: testWriter{t}})
	t.Logf("node Ready %.1fs after start", time.Since(start).Seconds())
	return n, ref
}

func kubectl(t *testing.T, n *harness.Node, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(n.BinDir, "kubectl"), append([]string{"--kubeconfig=" + n.KubeconfigPath}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func helm(t *testing.T, n *harness.Node, args ...string) string {
	t.Helper()
	path, err := harness.HelmPath()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(args, "--kubeconfig="+n.KubeconfigPath)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitReady waits until n pods match selector and are all Ready, and returns them.
func waitReady(t *testing.T, node *harness.Node, ns, selector string, want int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		list, err := node.Clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			ready := 0
			var states []string
			for _, p := range list.Items {
				if p.DeletionTimestamp != nil {
					continue
				}
				ok := false
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ok = true
					}
				}
				if ok {
					ready++
				}
				states = append(states, fmt.Sprintf("%s=%s ready=%t", p.Name, p.Status.Phase, ok))
			}
			if ready == want && len(states) == want {
				return list.Items
			}
			last = strings.Join(states, ", ")
		} else {
			last = err.Error()
		}
		time.Sleep(300 * time.Millisecond)
	}
	events := kubectl(t, node, nil, "get", "events", "-n", ns, "--sort-by=.lastTimestamp")
	t.Fatalf("%d Ready pods %q in %s not reached within %s (last: %s)\nevents:\n%s", want, selector, ns, timeout, last, events)
	return nil
}

// TestNodeRunsPods is the node itself: a pod from an imported image runs (as the upstream
// chart's Pushgateway, unmutated: no webhook here), answers on its pod IP and through its
// Service's ClusterIP (kube-proxy), and the node leaves the host as it found it.
func TestNodeRunsPods(t *testing.T) {
	n, _ := startNode(t)
	ctx := context.Background()
	manifests := upstreamChart(t, "plain")
	kubectl(t, n, nil, "create", "namespace", "plain")
	kubectl(t, n, manifests, "apply", "-f", "-")
	pods := waitReady(t, n, "plain", "app.kubernetes.io/name=prometheus-pushgateway", 1, 3*time.Minute)
	pod := pods[0]
	if pod.Spec.Containers[0].Lifecycle != nil {
		t.Errorf("no webhook is registered, yet the pod has a lifecycle: %+v", pod.Spec.Containers[0].Lifecycle)
	}
	client := n.HTTPClient(5 * time.Second)
	for _, url := range []string{
		"http://" + pod.Status.PodIP + ":9091/-/ready",
		"http://" + serviceIP(t, n, "plain", "pgw-prometheus-pushgateway") + ":9091/-/ready",
	} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s from the node: %v", url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
		t.Logf("GET %s from the node's namespace: %d", url, resp.StatusCode)
	}
	// Logs and exec go through the API server to the kubelet.
	logs := kubectl(t, n, nil, "logs", "-n", "plain", pod.Name)
	if !strings.Contains(logs, "Listening on") && !strings.Contains(logs, "listen") {
		t.Errorf("Pushgateway's log does not show it listening:\n%s", logs)
	}
	// A plain delete: no preStop, so the kubelet sends SIGTERM at once.
	took := deleteAndWait(t, n, "plain", pod.Name, 2*time.Minute)
	t.Logf("unmutated pod: deletion -> gone %.2fs", took.Seconds())
	_ = ctx

	stopAndCheck(t, n)
}

// stopAndCheck stops the node now (rather than in t.Cleanup) and fails on any leftover.
func stopAndCheck(t *testing.T, n *harness.Node) {
	t.Helper()
	start := time.Now()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("node stopped and cleaned up in %.1fs; host compared with the snapshot before the start (%s): no difference, no process in the node's namespaces",
		time.Since(start).Seconds(), n.Before.Summary())
}

func serviceIP(t *testing.T, n *harness.Node, ns, name string) string {
	t.Helper()
	svc, err := n.Clientset.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// upstreamChart returns the upstream Pushgateway chart's default rendering, in namespace ns.
func upstreamChart(t *testing.T, ns string) []byte {
	t.Helper()
	dir, err := harness.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "upstream-chart", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("namespace: monitoring"), []byte("namespace: "+ns))
}

// deleteAndWait deletes a pod and returns the time from the delete call to the object's
// disappearance.
func deleteAndWait(t *testing.T, n *harness.Node, ns, name string, timeout time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w, err := n.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if err := n.Clientset.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch of %s/%s ended before it was gone", ns, name)
			}
			if ev.Type == watch.Deleted {
				return time.Since(start)
			}
		case <-ctx.Done():
			if _, err := n.Clientset.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return time.Since(start)
			}
			t.Fatalf("pod %s/%s still there %s after its deletion", ns, name, timeout)
		}
	}
}
