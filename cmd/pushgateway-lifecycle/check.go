package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/check"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/version"
)

// Exit codes of check.
const (
	checkExitOK     = 0
	checkExitFailed = 1
	checkExitError  = 2
)

func checkCmd(args []string, stdout, stderr io.Writer) int {
	o := check.Defaults()
	fs := pflag.NewFlagSet("check", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pushgateway-lifecycle check [-n NAMESPACE] [--timeout 2m]\n\n"+
			"Creates a Pushgateway pod with dry-run (nothing is stored) until the API server returns it with the\n"+
			"product's preStop hook and grace period. The chart runs it after install and upgrade, and as `helm test`.\n"+
			"Exit status: 0 the mutation works, 1 it did not within --timeout (the reason is printed), 2 bad flags.\n\n%s", fs.FlagUsages())
	}
	kubeconfig := kubeconfigFlags(fs)
	fs.StringVarP(&o.Namespace, "namespace", "n", os.Getenv("POD_NAMESPACE"), "Namespace of the dry-run pod: the release namespace, where only the check's labelled pod is sent to the product (default $POD_NAMESPACE, else the context's).")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "Give up after this long.")
	fs.DurationVar(&o.Interval, "interval", o.Interval, "Wait between two attempts.")
	fs.StringVar(&o.Container, "container", o.Container, "Name of the dry-run pod's Pushgateway container.")
	fs.StringVar(&o.Image, "image", o.Image, "Image of that container (never pulled: the pod is not stored).")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return checkExitOK
		}
		fmt.Fprintf(stderr, "error: %v\n\n%s", err, fs.FlagUsages())
		return checkExitError
	}
	cc := kubeconfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "error: kubeconfig: %v\n", err)
		return checkExitError
	}
	if o.Namespace == "" {
		if o.Namespace, _, err = cc.Namespace(); err != nil {
			fmt.Fprintf(stderr, "error: kubeconfig: %v\n", err)
			return checkExitError
		}
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return checkExitError
	}
	cfg.UserAgent = "pushgateway-lifecycle-check/" + version.Version
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return checkExitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	o.Out = stderr
	res, err := check.Run(ctx, cs, o)
	if err != nil {
		fmt.Fprintf(stderr, "FAILED: %v\n", err)
		return checkExitFailed
	}
	fmt.Fprintf(stdout, "ok: the API server mutates Pushgateway pods in %s: preStop %s, terminationGracePeriodSeconds %d (status %q; %d attempt(s), %s)\n",
		o.Namespace, res.Hook, res.Grace, res.Status, res.Attempts, res.Elapsed.Round(1e6))
	return checkExitOK
}
