// Command benchserver serves one of the benchmark's reference handlers (test/bench/servers)
// on pkg/server (server.Serve): `benchserver serve --mode=constant-answer|constant-patch|defaulter` with the
// same flags as `pushgateway-lifecycle serve`, so the harness starts it the same way.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/server"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/bench/servers"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	o := server.DefaultOptions()
	fs := pflag.NewFlagSet("benchserver", pflag.ContinueOnError)
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "")
	policyFile := fs.String("policy", "", "policy file (constant-patch, defaulter)")
	mode := fs.String("mode", "constant-answer", "constant-answer | constant-patch | defaulter")
	podFile := fs.String("pod", "", "constant-patch: the pod (YAML) whose patch is returned for every review")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var h http.Handler
	switch *mode {
	case "constant-answer":
		h = servers.ConstantAnswer()
	case "constant-patch":
		data, err := os.ReadFile(*podFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "--pod:", err)
			os.Exit(2)
		}
		var pod corev1.Pod
		if err := yaml.Unmarshal(data, &pod); err != nil {
			fmt.Fprintln(os.Stderr, "--pod:", err)
			os.Exit(2)
		}
		if h, err = servers.ConstantPatch(&pod, pol); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	case "defaulter":
		h = servers.Defaulter(pol)
	default:
		fmt.Fprintf(os.Stderr, "--mode %q: must be constant-answer, constant-patch or defaulter\n", *mode)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err = server.Serve(ctx, o, map[string]http.Handler{webhook.PathMutatePods: h}, zap.New())
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
