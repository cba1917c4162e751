// Command pushgateway-lifecycle is the product's one binary: serve (the admission webhooks and
// the controllers), mutate (the same mutation offline, also a Helm post-renderer), audit (the
// live cluster's pods against the policy), admission-policy (the same rules as
// MutatingAdmissionPolicy objects) and check (the startup check). It only wires flags to the
// packages under pkg/.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/certs"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/preview"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/server"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/version"
)

// Exit codes of mutate (documented in the README).
const (
	exitOK      = 0
	exitDenied  = 1 // a denial, or with --strict an object not placed
	exitBadArgs = 2
)

const usage = `pushgateway-lifecycle: graceful shutdown for Prometheus Pushgateway pods.

Usage:
  pushgateway-lifecycle serve  [flags]   serve the admission webhook
  pushgateway-lifecycle mutate -f FILE|- [--policy FILE] [--diff] [--strict]
                                         apply the mutation to YAML or JSON (Helm post-renderer)
  pushgateway-lifecycle audit [-n NS|-A] [-o wide|json|yaml]
                                         list unprotected Pushgateway pods and their fix
  pushgateway-lifecycle admission-policy [--policy FILE]
                                         print the same mutation as a MutatingAdmissionPolicy (Kubernetes 1.36+)
  pushgateway-lifecycle check [-n NS] [--timeout 2m]
                                         succeed once the API server mutates a dry-run Pushgateway pod (the chart's startup check)
  pushgateway-lifecycle version          print the version

Run "pushgateway-lifecycle <command> --help" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBadArgs
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "mutate":
		return mutate(args[1:], stdin, stdout, stderr)
	case "audit":
		return auditCmd(args[1:], stdout, stderr)
	case "admission-policy":
		return admissionPolicy(args[1:], stdout, stderr)
	case "check":
		return checkCmd(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return exitBadArgs
}

func serve(args []string, stderr io.Writer) int {
	o := server.DefaultOptions()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "Address the webhook server binds to (empty: all).")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "Port of the webhook server.")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "Directory with the serving certificate and key; reloaded when they change.")
	fs.StringVar(&o.CertName, "cert-name", o.CertName, "Certificate file name in --cert-dir.")
	fs.StringVar(&o.KeyName, "key-name", o.KeyName, "Key file name in --cert-dir.")
	fs.StringVar(&o.TLSMinVersion, "tls-min-version", o.TLSMinVersion, "Minimum TLS version: 1.2 or 1.3.")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", o.EnableHTTP2, "Serve HTTP/2 (off by default: CVE-2023-44487).")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "Require client certificates signed by this CA (the API server's); reloaded when it changes.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, `Address of the metrics endpoint ("0" disables).`)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of /healthz and /readyz.")
	fs.StringVar(&o.PolicyFile, "policy", o.PolicyFile, "Policy file (YAML), reloaded on change; built-in defaults without it.")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "After SIGTERM, stay up unready this long before stopping.")
	fs.DurationVar(&o.CertWaitTimeout, "cert-wait-timeout", o.CertWaitTimeout, "Give up when the certificate has not appeared after this long (0: wait).")
	fs.DurationVar(&o.RequestReadTimeout, "request-read-timeout", o.RequestReadTimeout, "Cut a request whose body has not fully arrived this long after its headers (at most 30s, the API server's longest webhook timeout).")
	fs.Int64Var(&o.MaxInflightRequestBytes, "max-inflight-request-bytes", o.MaxInflightRequestBytes, "Bound on the body buffers of all requests being read at once, beyond 64 KiB each; over it a request waits, then gets HTTP 503 (0: no bound).")
	var rot certs.Options
	rotate := fs.Bool("cert-rotation", false, "Generate and rotate the serving certificate in-process (no cert-manager): keeps a CA and a serving pair in --cert-secret-name, writes the pair into --cert-dir and the CA into the webhook configurations.")
	fs.StringVar(&rot.SecretName, "cert-secret-name", "", "With --cert-rotation: the Secret (created empty by the chart) that holds the CA and the serving pair.")
	fs.StringVar(&rot.ServiceName, "cert-service-name", "", "With --cert-rotation: the webhook Service; the certificate is valid for its DNS names.")
	fs.StringVar(&rot.Namespace, "cert-namespace", os.Getenv("POD_NAMESPACE"), "With --cert-rotation: namespace of the Secret and Service (default $POD_NAMESPACE).")
	fs.StringVar(&rot.MutatingWebhookName, "mutating-webhook-name", "", "With --cert-rotation: MutatingWebhookConfiguration whose caBundle is kept in sync.")
	fs.StringVar(&rot.ValidatingWebhookName, "validating-webhook-name", "", "With --cert-rotation: ValidatingWebhookConfiguration whose caBundle is kept in sync.")
	fs.DurationVar(&rot.CAValidity, "cert-ca-validity", certs.DefaultCAValidity, "With --cert-rotation: lifetime of a generated CA; a new one is rolled in during its last third.")
	fs.DurationVar(&rot.CertValidity, "cert-validity", certs.DefaultCertValidity, "With --cert-rotation: lifetime of a serving certificate; renewed during its last third.")
	fs.DurationVar(&rot.RolloverGrace, "cert-rollover-grace", certs.DefaultRolloverGrace, "With --cert-rotation: how long a new CA must have been in every caBundle before certificates signed by it are served.")
	fs.BoolVar(&o.Handoff, "handoff", o.Handoff, "Hold a new pod (scheduling gate pushgateway-lifecycle.io/handoff) while a terminating pod still holds the PersistentVolumeClaim or hostPath it mounts, and lift the gate once that pod has stopped (needs pods get/list/watch/patch).")
	driftWatch := fs.Bool("drift-watch", false, "Report every selected running pod without the product's spec (created while the webhook was unreachable, before its namespace opted in, or before a policy change): the gauge pushgateway_lifecycle_unprotected_pods and a Warning event PushgatewayUnprotected on the pod (needs pods and namespaces get/list/watch, events create).")
	driftSelector := fs.String("namespace-selector", annotations.LabelInjection+"="+annotations.InjectionEnabled, `With --drift-watch: the namespaces the webhook is called for, as the mutating webhook's namespaceSelector: a label selector ("a=b,c in (d)") or that LabelSelector as JSON (the chart passes it); kube-system and $POD_NAMESPACE are never opted in.`)
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "Run the controllers on one replica at a time (a Lease in --leader-election-namespace); the webhook runs on every replica.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the leader election Lease (default $POD_NAMESPACE).")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the leader election Lease.")
	zapOpts := zap.Options{}
	gfs := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	zapOpts.BindFlags(gfs)
	fs.AddGoFlagSet(gfs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "error: %v\n\n%s", err, fs.FlagUsages())
		return exitBadArgs
	}
	if *rotate {
		o.CertRotation = &rot
	}
	if *driftWatch {
		sel, err := audit.ParseNamespaceSelector(*driftSelector)
		if err != nil {
			fmt.Fprintf(stderr, "error: --namespace-selector %q: %v\n", *driftSelector, err)
			return exitBadArgs
		}
		ex := []string{"kube-system"}
		if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
			ex = append(ex, ns)
		}
		o.Drift = &audit.NamespaceScope{NamespaceSelector: sel, Excluded: ex}
	}
	log := zap.New(zap.UseFlagOptions(&zapOpts))
	ctrl.SetLogger(log)
	log.Info("starting", "version", version.Version)

	// The first SIGTERM starts the drain; a second one exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		cancel()
		<-sig
		os.Exit(1)
	}()
	if err := server.Run(ctx, o, log); err != nil {
		log.Error(err, "server failed")
		return 1
	}
	log.Info("stopped")
	return exitOK
}

func mutate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("mutate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.StringP("filename", "f", "", `YAML or JSON file to mutate ("-" for standard input); Lists are mutated item by item.`)
	policyFile := fs.String("policy", "", "Policy file (YAML); built-in defaults without it.")
	diff := fs.Bool("diff", false, "Print a unified diff instead of the mutated documents.")
	strict := fs.Bool("strict", false, "Exit 1 when a document carries a pod template mutate cannot place (each one is named on stderr either way).")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "error: %v\n\n%s", err, fs.FlagUsages())
		return exitBadArgs
	}
	if *file == "" {
		// Helm runs a post-renderer with the manifests on stdin and no arguments.
		*file = "-"
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return exitBadArgs
	}
	in := stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return exitBadArgs
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	res, err := preview.Stream(in, stdout, pol, preview.Options{Diff: *diff})
	for _, n := range preview.RiskNotes(res) {
		// Not a failure, even with --strict: the fix is in the workload, not in what mutate writes.
		prefix := "warning:"
		if n.Info {
			prefix = "info:"
		}
		fmt.Fprintln(stderr, prefix, n.Notice)
	}
	notices := preview.Notices(res)
	for _, n := range notices {
		fmt.Fprintln(stderr, "notice:", n)
	}
	for _, n := range preview.HandoffNotes(res) {
		fmt.Fprintln(stderr, "note:", n)
	}
	var ie *preview.InputError
	switch {
	case err == nil && *strict && len(notices) > 0:
		fmt.Fprintf(stderr, "error: --strict: %d object(s) not placed\n", len(notices))
		return exitDenied
	case err == nil:
		return exitOK
	case errors.As(err, &ie):
		fmt.Fprintln(stderr, "error:", err)
		return exitBadArgs
	case errors.Is(err, preview.ErrDenied):
		fmt.Fprintln(stderr, "denied:", err)
		return exitDenied
	}
	fmt.Fprintln(stderr, "error:", err)
	return exitBadArgs
}
