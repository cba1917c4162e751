// Command run is `make run`: the product on a local control plane. It starts etcd,
// kube-apiserver and kube-controller-manager, the real pushgateway-lifecycle server (webhook and
// handoff controller) with a generated certificate, registers the webhook configuration, opts
// the default namespace in, writes ./kubeconfig, prints how to try it, and stops everything on
// Ctrl-C or SIGTERM. A Node object without a kubelet and a stand-in for the scheduler (it binds
// every ungated pod of the default namespace to that node) let a newcomer see the handoff gate:
// a deleted pod stays Terminating, as on a node still running its preStop hook, and its
// replacement waits, gated, until it is gone.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// nodeName is the Node object `make run` creates: no kubelet ever reports for it.
const nodeName = "local-node"

func main() {
	port := flag.Int("webhook-port", 0, "port for the webhook on 127.0.0.1 (0: a free one)")
	policy := flag.String("policy", "", "policy file passed to the webhook (hot-reloaded: edit it while running)")
	flag.Parse()
	if err := run(*port, *policy); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(port int, policy string) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		// Ctrl-C during start-up cancels whatever step was running: not a failure, the
		// deferred stops below still clean up.
		if err != nil && ctx.Err() != nil {
			fmt.Printf("interrupted during start-up (%v)\n", err)
			err = nil
		}
	}()
	root, err := fixtures.RepoRoot()
	if err != nil {
		return err
	}
	logDir := filepath.Join(root, "bin", "run")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	step("k8s binaries (the first run builds them from source: about 10-15 minutes on 2 cores) ...")
	if _, err := harness.K8sBinDir(); err != nil {
		return err
	}
	step("starting etcd, kube-apiserver, kube-controller-manager ...")
	kcmLog, err := os.Create(filepath.Join(logDir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	defer kcmLog.Close()
	cp, err := harness.Start(harness.Options{ControllerManager: true, Log: kcmLog})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the control plane ...")
		if e := cp.Stop(); e != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", e)
		}
		step("stopped")
	}()
	if ctx.Err() != nil {
		return nil
	}

	binary := os.Getenv("PGL_BINARY") // set by the Makefile after `make build`
	if _, e := os.Stat(binary); binary == "" || e != nil {
		step("building pushgateway-lifecycle ...")
		if binary, err = harness.BuildBinary(); err != nil {
			return err
		}
	}
	whLogPath := filepath.Join(logDir, "webhook.log")
	whLog, err := os.Create(whLogPath)
	if err != nil {
		return err
	}
	defer whLog.Close()
	if policy != "" {
		if policy, err = filepath.Abs(policy); err != nil {
			return err
		}
	}
	step("starting the webhook (%s serve) ...", binary)
	if err := cp.CreateNamespace(ctx, harness.WebhookNamespace, false); err != nil {
		return err
	}
	wh, err := harness.StartWebhookServer(cp.CertDir, harness.WebhookOptions{
		Binary: binary, Port: port, PolicyFile: policy, Log: whLog,
		// The whole product: the handoff gate's informer and controller need the API.
		Args: []string{"--handoff", "--leader-elect", "--leader-election-namespace=" + harness.WebhookNamespace},
		Env:  []string{"KUBECONFIG=" + cp.KubeconfigPath},
	})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the webhook ...")
		if e := wh.Stop(15 * time.Second); e != nil {
			fmt.Fprintln(os.Stderr, "stop webhook:", e)
		}
	}()

	cfgs := harness.DefaultWebhookConfigs().PointAt(wh.URL(""), cp.CAData)
	if err := cp.Register(ctx, cfgs); err != nil {
		return err
	}
	if err := cp.SetNamespaceOptIn(ctx, "default", true); err != nil {
		return err
	}
	if err := cp.WaitForWebhook(ctx, "default", time.Minute); err != nil {
		return err
	}
	kubeconfig := filepath.Join(root, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cp.Env.KubeConfig, 0o600); err != nil {
		return err
	}
	defer os.Remove(kubeconfig) // it points at a control plane that is about to disappear
	if _, err := cp.Clientset.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	go bindUngated(ctx, cp.Clientset)
	step("ready: webhook %s registered; namespace default opted in; node %s (no kubelet)", wh.URL(harness.MutatePodPath), nodeName)

	kubectl := cp.KubectlPath()
	if rel, e := filepath.Rel(root, kubectl); e == nil {
		kubectl = rel
	}
	sample := filepath.Join("test", "harness", "cmd", "run", "sample-deployment.yaml")
	fmt.Printf(`
kubeconfig:
%[1]s

Try it (from %[2]s, in another terminal):
  %[3]s --kubeconfig kubeconfig apply -f %[4]s
  %[3]s --kubeconfig kubeconfig get pod -l app.kubernetes.io/name=prometheus-pushgateway -o yaml

The pod gets lifecycle.preStop.sleep.seconds: 30, terminationGracePeriodSeconds: 45 and the
annotation pushgateway-lifecycle.io/status. It is bound to %[7]s, which has no kubelet, so it never
runs, and a deleted pod stays Terminating as on a node that runs its preStop hook. The handoff gate:
  %[3]s --kubeconfig kubeconfig delete pod -l app.kubernetes.io/name=prometheus-pushgateway --wait=false
  %[3]s --kubeconfig kubeconfig get pod -o custom-columns=NAME:.metadata.name,GATES:.spec.schedulingGates[*].name,DELETING:.metadata.deletionTimestamp,NODE:.spec.nodeName
The replacement carries the gate pushgateway-lifecycle.io/handoff while its predecessor holds the
claim; remove the predecessor (as its kubelet would) and the controller lifts the gate:
  %[3]s --kubeconfig kubeconfig delete pod <the Terminating one> --grace-period=0 --force
  %[3]s --kubeconfig kubeconfig get events --field-selector reason!=Scheduled
(Without the force delete the gate goes at the predecessor's deletionTimestamp + handoff.maxWait,
30 s, with a HandoffTimedOut warning.)
Server logs: %[5]s   metrics: %[6]s
Ctrl-C stops everything.
`, kubeconfig, root, kubectl, sample, whLogPath, wh.MetricsURL(), nodeName)

	select {
	case <-ctx.Done():
		fmt.Println()
		step("signal received")
	case <-wh.Exited():
		return fmt.Errorf("the webhook exited: %w (see %s)", wh.ExitErr(), whLogPath)
	case <-cp.ControllerManager.Exited():
		return fmt.Errorf("kube-controller-manager exited: %w (see %s)", cp.ControllerManager.ExitErr(), kcmLog.Name())
	}
	return nil
}

// bindUngated stands in for kube-scheduler in the default namespace: it binds every pod that
// has no node and no scheduling gate to the kubelet-less node, as the scheduler would once the
// handoff gate is lifted. A poll is enough for a demonstration.
func bindUngated(ctx context.Context, c kubernetes.Interface) {
	for ctx.Err() == nil {
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName="})
		if err == nil {
			for _, p := range pods.Items {
				if len(p.Spec.SchedulingGates) > 0 || p.DeletionTimestamp != nil {
					continue
				}
				err := c.CoreV1().Pods("default").Bind(ctx, &corev1.Binding{
					ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
					Target:     corev1.ObjectReference{Kind: "Node", Name: nodeName},
				}, metav1.CreateOptions{})
				if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "binding %s: %v\n", p.Name, err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
