package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReleaseFullname(t *testing.T) {
	for release, want := range map[string]string{
		"pushgateway-lifecycle":         "pushgateway-lifecycle",
		"my-pushgateway-lifecycle-prod": "my-pushgateway-lifecycle-prod",
		"pgl":                           "pgl-pushgateway-lifecycle",
		strings.Repeat("a", 50):         strings.Repeat("a", 50) + "-pushgateway",
		strings.Repeat("b", 42):         strings.Repeat("b", 42) + "-pushgateway-lifecycl",
	} {
		if got := releaseFullname(release); got != want {
			t.Errorf("releaseFullname(%q) = %q, want %q", release, got, want)
		}
	}
}

// TestAuditArguments covers what fails before any request: each error names the flag and the
// accepted values, and exits 2. The cluster behaviour is in test/audit.
func TestAuditArguments(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	// A syntactically valid kubeconfig whose server nobody listens on: argument errors must be
	// reported before it is ever dialled.
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("onInvalid: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "xml"}, `--output "xml": must be one of wide, json, yaml`},
		{[]string{"--scope", "global"}, `--scope "global": must be "namespace" or "cluster"`},
		{[]string{"--namespace-selector", "a in (b"}, `--namespace-selector "a in (b"`},
		{[]string{"--policy", bad, "--from-release", "x"}, "--policy and --from-release are exclusive"},
		{[]string{"--policy", bad}, `onInvalid: Unsupported value: "sometimes"`},
		{[]string{"--kubeconfig", filepath.Join(dir, "missing")}, "kubeconfig: stat "},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"-A"}, "cannot reach the API server"},
	} {
		var stdout, stderr bytes.Buffer
		args := c.args
		if !strings.HasPrefix(strings.Join(args, " "), "--kubeconfig") {
			args = append([]string{"--kubeconfig", kc}, args...)
		}
		code := run(append([]string{"audit"}, args...), nil, &stdout, &stderr)
		if code != auditExitError || !strings.Contains(stderr.String(), c.want) || stdout.Len() != 0 {
			t.Errorf("audit %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, stdout.String(), stderr.String(), c.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"audit", "--help"}, nil, &stdout, &stderr); code != exitOK || !strings.Contains(stderr.String(), "Exit status: 0 every pod protected") {
		t.Errorf("--help: exit %d, %q", code, stderr.String())
	}
}
