package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/version"
)

// Exit codes of audit (docs/audit.md).
const (
	auditExitProtected   = 0
	auditExitUnprotected = 1
	auditExitError       = 2
)

// kubeconfigFlags adds kubectl's --kubeconfig and --context to fs; the function it returns
// gives the client configuration they name, once fs is parsed.
func kubeconfigFlags(fs *pflag.FlagSet) func() clientcmd.ClientConfig {
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	fs.StringVar(&loading.ExplicitPath, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).")
	overrides := &clientcmd.ConfigOverrides{}
	fs.StringVar(&overrides.CurrentContext, "context", "", "The kubeconfig context to use.")
	return func() clientcmd.ClientConfig {
		return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, overrides)
	}
}

// chartName is the chart's name, from which Helm derives the full name of its resources.
const chartName = "pushgateway-lifecycle"

// policyConfigMapKey is the key of the policy in the chart's ConfigMap (templates/configmap-policy.yaml).
const policyConfigMapKey = "policy.yaml"

func auditCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("audit", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pushgateway-lifecycle audit [-n NAMESPACE | -A] [--policy FILE | --from-release NAME] [-o wide|json|yaml]\n\n"+
			"Lists the Pushgateway pods the policy selects that are not protected, and the command that fixes each workload.\n"+
			"Exit status: 0 every pod protected (or opted out), 1 some pod is not, 2 an error (the report then holds what could be read).\n\n%s", fs.FlagUsages())
	}
	kubeconfig := kubeconfigFlags(fs)
	namespace := fs.StringP("namespace", "n", "", "Namespace to audit (default: the context's namespace).")
	all := fs.BoolP("all-namespaces", "A", false, "Audit every namespace.")
	output := fs.StringP("output", "o", "", "Output format: wide, json or yaml (default: a table of the workloads).")
	timeout := fs.Duration("request-timeout", 30*time.Second, "Timeout of each request to the API server.")
	chunk := fs.Int64("chunk-size", audit.DefaultPageSize, "List this many objects per request (limit/continue).")
	policyFile := fs.String("policy", "", "Policy file (YAML); the built-in defaults without it or --from-release.")
	release := fs.String("from-release", "", "Read the policy from the ConfigMap of this Helm release of the chart.")
	releaseNS := fs.String("release-namespace", "pushgateway-lifecycle-system", "Namespace of the release (--from-release); the webhook is never called for it.")
	scope := fs.String("scope", "namespace", `The chart's webhook.scope: "namespace" (namespaces matching --namespace-selector) or "cluster" (every namespace).`)
	nsSelector := fs.String("namespace-selector", annotations.LabelInjection+"="+annotations.InjectionEnabled, "Label selector of the opted-in namespaces (the chart's webhook.namespaceSelector), or that LabelSelector as JSON.")
	excluded := fs.StringSlice("excluded-namespaces", []string{"kube-system"}, "Namespaces the webhook is never called for (the chart's webhook.excludedNamespaces; kube-system and --release-namespace always are).")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "error: %v\n\n%s", err, fs.FlagUsages())
		return auditExitError
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "error: "+format+"\n", a...)
		return auditExitError
	}
	switch *output {
	case audit.FormatTable, audit.FormatWide, audit.FormatJSON, audit.FormatYAML:
	default:
		return fail("--output %q: must be one of %s", *output, strings.Join(audit.Formats, ", "))
	}
	if *scope != "namespace" && *scope != "cluster" {
		return fail(`--scope %q: must be "namespace" or "cluster"`, *scope)
	}
	sel, err := audit.ParseNamespaceSelector(*nsSelector)
	if err != nil {
		return fail("--namespace-selector %q: %v", *nsSelector, err)
	}
	if *policyFile != "" && *release != "" {
		return fail("--policy and --from-release are exclusive: the policy comes from one place")
	}

	cc := kubeconfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		return fail("kubeconfig: %v", err)
	}
	cfg.Timeout = *timeout
	cfg.UserAgent = "pushgateway-lifecycle-audit/" + version.Version
	// Protobuf halves the bytes and the decoding time of a 10,000-pod list.
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	// kubectl's client-side limits: polite to the API server, quick for a few hundred workloads.
	cfg.QPS, cfg.Burst = 50, 300
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail("%v", err)
	}
	if *namespace == "" && !*all {
		if *namespace, _, err = cc.Namespace(); err != nil {
			return fail("kubeconfig: %v", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sc := audit.Scope{AllNamespaces: *all, Policy: "built-in", WebhookScope: *scope}
	if !*all {
		sc.Namespace = *namespace
	}
	var pol *policy.Policy
	switch {
	case *release != "":
		name := releaseFullname(*release) + "-policy"
		sc.Policy = "configmap:" + *releaseNS + "/" + name
		if pol, err = policyFromConfigMap(ctx, client, *releaseNS, name); err != nil {
			return fail("--from-release %s: %v", *release, err)
		}
	case *policyFile != "":
		sc.Policy = "file:" + *policyFile
		if pol, err = policy.Load(*policyFile); err != nil {
			return fail("%v", err)
		}
	default:
		pol = policy.Default()
	}
	ex := append([]string{"kube-system", *releaseNS}, *excluded...)
	ex = uniq(ex)
	sc.ExcludedNames = ex
	if *scope == "namespace" {
		sc.NamespaceSelector = sel.String()
	}
	opts := audit.Options{Namespace: *namespace, AllNamespaces: *all, Policy: pol,
		NamespaceScope: audit.NamespaceScope{ClusterScope: *scope == "cluster", NamespaceSelector: sel, Excluded: ex}, PageSize: *chunk}
	rep, err := audit.Run(ctx, client, opts, sc)
	if err != nil {
		return fail("%v (API server %s)", err, cfg.Host)
	}
	if err := audit.Print(stdout, rep, *output); err != nil {
		return fail("%v", err)
	}
	if len(rep.Pods) == 0 && len(rep.Errors) == 0 && (*output == audit.FormatTable || *output == audit.FormatWide) {
		where := "in namespace " + *namespace
		if *all {
			where = "in any namespace"
		}
		fmt.Fprintf(stderr, "No Pushgateway pods selected by the policy found %s.\n", where)
	}
	for _, e := range rep.Errors {
		fmt.Fprintln(stderr, "error:", e.Message)
	}
	switch {
	case len(rep.Errors) > 0:
		return auditExitError
	case !rep.Summary.AllProtected:
		return auditExitUnprotected
	}
	return auditExitProtected
}

// releaseFullname is the chart's "pgl.fullname" for a release without name overrides.
func releaseFullname(release string) string {
	name := release
	if !strings.Contains(release, chartName) {
		name = release + "-" + chartName
	}
	if len(name) > 63 {
		name = name[:63]
	}
	return strings.TrimSuffix(name, "-")
}

func policyFromConfigMap(ctx context.Context, c kubernetes.Interface, namespace, name string) (*policy.Policy, error) {
	cm, err := c.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("ConfigMap %s/%s not found: is the chart installed under that release name in that namespace (--release-namespace)?", namespace, name)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("missing permission: get configmaps in namespace %s (%w)", namespace, err)
	case err != nil:
		return nil, fmt.Errorf("cannot read ConfigMap %s/%s: %w", namespace, name, err)
	}
	data, ok := cm.Data[policyConfigMapKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no key %s", namespace, name, policyConfigMapKey)
	}
	p, err := policy.Parse([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", namespace, name, err)
	}
	return p, nil
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
