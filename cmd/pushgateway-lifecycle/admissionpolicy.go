package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/admissionpolicy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// admissionPolicy prints the MutatingAdmissionPolicy, the ValidatingAdmissionPolicies and
// their bindings generated from a policy file: the webhook's mutation without a webhook.
func admissionPolicy(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("admission-policy", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFile := fs.String("policy", "", "Policy file (YAML); built-in defaults without it.")
	name := fs.String("name", admissionpolicy.DefaultName, "Name of the policies and bindings.")
	scope := fs.String("scope", "namespace", `"namespace": bind the namespaces labelled pushgateway-lifecycle.io/injection=enabled; "cluster": every namespace.`)
	excluded := fs.StringSlice("exclude-namespace", nil, "Namespace never bound (repeatable; kube-system always is).")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "error: %v\n\n%s", err, fs.FlagUsages())
		return exitBadArgs
	}
	if *scope != "namespace" && *scope != "cluster" {
		fmt.Fprintf(stderr, "error: --scope %q: must be \"namespace\" or \"cluster\"\n", *scope)
		return exitBadArgs
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return exitBadArgs
	}
	p, err := admissionpolicy.Generate(pol, admissionpolicy.Options{Name: *name, ClusterScope: *scope == "cluster", ExcludedNamespaces: *excluded})
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return exitBadArgs
	}
	out, err := p.YAML()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return exitBadArgs
	}
	_, _ = stdout.Write(out)
	return exitOK
}
