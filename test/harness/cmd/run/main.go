// Command run is `make run`: the product on a local control plane. It starts etcd,
// kube-apiserver and kube-controller-manager, the real pushgateway-lifecycle webhook with a
// generated certificate, registers the webhook configuration, opts the default namespace in,
// writes ./kubeconfig, prints how to try it, and stops everything on Ctrl-C or SIGTERM.
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

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

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
	root, err := harness.RepoRoot()
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
	wh, err := harness.StartWebhookServer(cp.CertDir, harness.WebhookOptions{
		Binary: binary, Port: port, PolicyFile: policy, Log: whLog,
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
	if err := cp.CreateNamespace(ctx, harness.WebhookNamespace, false); err != nil {
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
	step("ready: webhook %s registered; namespace default opted in", wh.URL(harness.MutatePodPath))

	kubectl := cp.KubectlPath()
	if rel, e := filepath.Rel(root, kubectl); e == nil {
		kubectl = rel
	}
	sample := filepath.Join("test", "harness", "cmd", "run", "sample-deployment.yaml")
	fmt.Printf(`
kubeconfig:
%s

Try it (from %s, in another terminal):
  %s --kubeconfig kubeconfig apply -f %s
  %s --kubeconfig kubeconfig get pod -l app.kubernetes.io/name=prometheus-pushgateway -o yaml

The pod gets lifecycle.preStop.sleep.seconds: 30, terminationGracePeriodSeconds: 45 and the
annotation pushgateway-lifecycle.io/status (pods stay Pending: there is no scheduler or kubelet).
Webhook logs: %s   metrics: %s
Ctrl-C stops everything.
`, kubeconfig, root, kubectl, sample, kubectl, whLogPath, wh.MetricsURL())

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
