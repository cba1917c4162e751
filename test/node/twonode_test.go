package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// TestNodeTwoNodes is the second node: both register and become Ready, the scheduler places a
// pod on the worker, its IP is in the worker's range, and it answers from the first node's
// namespace on its pod IP and through the ClusterIP (routes between the nodes and kube-proxy),
// its log comes through the API server from the worker's kubelet, and the host is left as found.
func TestNodeTwoNodes(t *testing.T) {
	requireNode(t)
	pgw, err := harness.PushgatewayImage()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n := harness.NewNode(t, harness.NodeOptions{Images: []string{pgw}, Progress: testWriter{t}, Workers: 1})
	t.Logf("two nodes Ready %.1fs after start", time.Since(start).Seconds())
	if got := n.NodeNames(); len(got) != 2 {
		t.Fatalf("NodeNames() = %v, want two", got)
	}
	w := n.Workers[0]
	kubectl(t, n, nil, "create", "namespace", "two")
	kubectl(t, n, upstreamChart(t, "two"), "apply", "-f", "-")
	kubectl(t, n, []byte(`{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"`+w.Name+`"}}}}}`),
		"-n", "two", "patch", "deployment", "pgw-prometheus-pushgateway", "--type=strategic", "--patch-file=/dev/stdin")
	var podIP, podName string
	deadline := time.Now().Add(3 * time.Minute)
	for podIP == "" {
		list, err := n.Clientset.CoreV1().Pods("two").List(context.Background(), metav1.ListOptions{LabelSelector: pgwSelector})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && p.Spec.NodeName == w.Name && p.Status.PodIP != "" {
				podIP, podName = p.Status.PodIP, p.Name
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pod on %s within 3m:\n%s", w.Name, kubectl(t, n, nil, "get", "events", "-n", "two"))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.HasPrefix(podIP, strings.TrimSuffix(w.PodCIDR, "0/24")) {
		t.Errorf("pod %s on %s has IP %s, outside the worker's range %s", podName, w.Name, podIP, w.PodCIDR)
	}
	client := n.HTTPClient(5 * time.Second)
	for _, url := range []string{
		"http://" + podIP + ":9091/-/ready",
		"http://" + serviceIP(t, n, "two", "pgw-prometheus-pushgateway") + ":9091/-/ready",
	} {
		var last string
		for deadline := time.Now().Add(60 * time.Second); ; {
			resp, err := client.Get(url)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				last = resp.Status
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s from %s: not 200 within 60 s (last: %s)", url, harness.NodeName, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("GET %s (pod on %s) from %s: 200", url, w.Name, harness.NodeName)
	}
	if logs := kubectl(t, n, nil, "logs", "-n", "two", podName); !strings.Contains(logs, "Listening") && !strings.Contains(logs, "listen") {
		t.Errorf("the worker's pod log through the API server does not show it listening:\n%s", logs)
	}
	stopAndCheck(t, n)
}
