package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdmissionPolicyCommand(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("onInvalid: reject\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("onInvalid: ignore\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"default", []string{"admission-policy"}, exitOK, []string{"kind: MutatingAdmissionPolicy\n", "kind: ValidatingAdmissionPolicyBinding\n", "- Warn\n", "pushgateway-lifecycle.io/injection: enabled"}},
		{"reject, cluster scope", []string{"admission-policy", "--policy", pol, "--scope", "cluster", "--exclude-namespace", "monitoring", "--name", "pgl"},
			exitOK, []string{"name: pgl\n", "name: pgl-workloads\n", "- Deny\n", "- monitoring\n"}},
		{"invalid policy", []string{"admission-policy", "--policy", bad}, exitBadArgs, []string{"onInvalid"}},
		{"bad scope", []string{"admission-policy", "--scope", "world"}, exitBadArgs, []string{"--scope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			out := stdout.String() + stderr.String()
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q", s)
				}
			}
		})
	}
}
