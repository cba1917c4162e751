// Command run-node is `make run-node`: the product on a real node. It starts etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd, the kubelet and
// kube-proxy in namespaces of their own (test/harness, docs/real-node.md), imports the
// webhook's and Pushgateway's images, installs the chart with `helm install`, opts the
// namespace "monitoring" in, prints the kubeconfig and what to try, and on Ctrl-C stops
// everything and checks that the host is as it was.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "run-node:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	if err := harness.NodeSupported(); err != nil {
		return fmt.Errorf("%w\n(`make run` runs the webhook against a control plane without a node, as any user)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := fixtures.RepoRoot()
	if err != nil {
		return err
	}
	logDir := filepath.Join(root, "bin", "run-node")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	step("images: Pushgateway, pushgateway-lifecycle (built from source, no registry) ...")
	pgw, err := harness.PushgatewayImage()
	if err != nil {
		return err
	}
	wh, ref, err := harness.WebhookImage(os.Getenv("PGL_BINARY"))
	if err != nil {
		return err
	}
	workers, err := harness.WorkersFromEnv(0)
	if err != nil {
		return err
	}
	n, err := harness.StartNode(harness.NodeOptions{LogDir: logDir, Progress: os.Stdout, Images: []string{pgw, wh}, Workers: workers})
	if n != nil {
		defer func() {
			step("stopping the node and checking the host ...")
			if e := n.Stop(); e != nil {
				fmt.Fprintln(os.Stderr, "stop:", e)
				if err == nil {
					err = e
				}
				return
			}
			step("stopped; the host is as it was (%s)", n.Before.Summary())
		}()
	}
	if err != nil {
		return fmt.Errorf("%w\n(component logs: %s)", err, logDir)
	}
	step("helm install %s (image %s) ...", harness.ChartReleaseName, ref)
	if out, err := n.InstallChart(ctx, filepath.Join(n.Dir, "helm")); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w\n%s", err, out)
	}
	if _, err := n.Run(ctx, filepath.Join(n.BinDir, "kubectl"), "--kubeconfig="+filepath.Join(n.Dir, "admin-inner.kubeconfig"),
		"create", "namespace", "monitoring"); err != nil {
		return err
	}
	if _, err := n.Run(ctx, filepath.Join(n.BinDir, "kubectl"), "--kubeconfig="+filepath.Join(n.Dir, "admin-inner.kubeconfig"),
		"label", "namespace", "monitoring", "pushgateway-lifecycle.io/injection=enabled"); err != nil {
		return err
	}
	kubectl := filepath.Join(n.BinDir, "kubectl")
	fixtures, _ := harness.UpstreamChartDir()
	step("ready")
	fmt.Printf(`
kubeconfig (admin, through a forwarder on 127.0.0.1):
  export KUBECONFIG=%s
  alias kubectl=%s

The chart runs in %s (2 replicas, certificates rotated in-process); the namespace
"monitoring" is opted in. Try, in another terminal:
  kubectl get pods -A -o wide
  kubectl apply -f %s/default.yaml     # the upstream Pushgateway chart, unchanged
  kubectl -n monitoring get pod -l app.kubernetes.io/name=prometheus-pushgateway \
    -o jsonpath='{.items[0].spec.containers[0].lifecycle}{"\n"}{.items[0].spec.terminationGracePeriodSeconds}{"\n"}'
  time kubectl -n monitoring delete pod -l app.kubernetes.io/name=prometheus-pushgateway
      # takes the preStop sleep (30 s by default): the kubelet runs the injected hook
  kubectl -n %s logs deploy/%s

Pods, Services and the API server live in a network namespace of their own (node %s,
pods %s, services %s), with no link out; the host reaches only the API server, through
a forwarder on its loopback.
Component logs: %s. Ctrl-C stops everything and checks the host.
`, n.KubeconfigPath, kubectl, harness.ChartNamespace, fixtures, harness.ChartNamespace, harness.ChartReleaseName,
		harness.NodeIP, harness.PodCIDR, harness.ServiceCIDR, logDir)
	<-ctx.Done()
	fmt.Println()
	step("signal received")
	return nil
}
