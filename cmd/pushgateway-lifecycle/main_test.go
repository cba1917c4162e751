package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: pgw
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: prometheus-pushgateway}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: prometheus-pushgateway
    spec:
      containers:
      - name: pushgateway
        image: quay.io/prometheus/pushgateway:v1.11.3
`

// kubectlList is `kubectl get deploy -o yaml` in short: a List, sequences not indented.
const kubectlList = `apiVersion: v1
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: pgw
    namespace: monitoring
  spec:
    template:
      metadata:
        labels:
          app.kubernetes.io/name: prometheus-pushgateway
      spec:
        containers:
        - image: quay.io/prometheus/pushgateway:v1.11.3
          name: pushgateway
        terminationGracePeriodSeconds: 30
kind: List
metadata:
  resourceVersion: ""
`

const jsonPod = `{
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "labels": {
            "app.kubernetes.io/name": "prometheus-pushgateway"
        },
        "name": "pgw"
    },
    "spec": {
        "containers": [
            {
                "image": "quay.io/prometheus/pushgateway:v1.11.3",
                "name": "pushgateway"
            }
        ]
    }
}
`

const widget = `apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
spec:
  template:
    metadata:
      labels:
        app.kubernetes.io/name: prometheus-pushgateway
    spec:
      containers:
      - name: pushgateway
        image: quay.io/prometheus/pushgateway:v1.11.3
`

func TestMutateCommand(t *testing.T) {
	dir := t.TempDir()
	reject := filepath.Join(dir, "reject.yaml")
	if err := os.WriteFile(reject, []byte("onInvalid: reject\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badPolicy := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badPolicy, []byte("onInvalid: sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(deployment, "      labels:\n", "      annotations: {pushgateway-lifecycle.io/pre-stop-sleep: 30sec}\n      labels:\n", 1)
	for _, tc := range []struct {
		name      string
		args      []string
		stdin     string
		code      int
		stdout    []string
		stderr    string
		exactEcho bool
		jsonOut   bool
	}{
		{name: "deployment from stdin", args: []string{"mutate", "-f", "-"}, stdin: deployment, code: 0,
			stdout: []string{"preStop:\n            sleep:\n              seconds: 30", "terminationGracePeriodSeconds: 45", "name: pushgateway"}},
		{name: "helm post-renderer: no arguments", args: []string{"mutate"}, stdin: deployment, code: 0, stdout: []string{"seconds: 30"}},
		{name: "diff", args: []string{"mutate", "--diff", "-f", "-"}, stdin: deployment, code: 0, stdout: []string{"+++ mutated", "+      terminationGracePeriodSeconds: 45"}},
		{name: "warn: typo still patched", args: []string{"mutate"}, stdin: typo, code: 0, stdout: []string{"seconds: 30", `invalid: metadata.annotations[pushgateway-lifecycle.io/pre-stop-sleep]`}},
		{name: "reject: exit 1 with the message", args: []string{"mutate", "--policy", reject}, stdin: typo, code: 1, stderr: `Invalid value: "30sec"`},
		{name: "unreadable YAML: exit 2", args: []string{"mutate"}, stdin: "a: [b\n", code: 2, stderr: "not valid YAML"},
		{name: "missing file: exit 2", args: []string{"mutate", "-f", filepath.Join(dir, "nope.yaml")}, code: 2, stderr: "no such file"},
		{name: "invalid policy: exit 2", args: []string{"mutate", "--policy", badPolicy}, stdin: deployment, code: 2, stderr: `onInvalid: Unsupported value: "sometimes"`},
		{name: "kubectl List: each item", args: []string{"mutate", "-f", "-"}, stdin: kubectlList, code: 0,
			stdout: []string{"kind: List", "preStop:\n            sleep:\n              seconds: 30", "terminationGracePeriodSeconds: 45"}},
		{name: "JSON in, JSON out", args: []string{"mutate"}, stdin: jsonPod, code: 0, jsonOut: true,
			stdout: []string{`"preStop": {`, `"terminationGracePeriodSeconds": 45`}},
		{name: "unknown kind with a pod template: notice, exit 0", args: []string{"mutate"}, stdin: widget, code: 0, stdout: []string{"kind: Widget"},
			stderr: "notice: document 1: Widget/w: pod template at spec.template not mutated"},
		{name: "--strict: a notice fails", args: []string{"mutate", "--strict"}, stdin: deployment + "---\n" + widget, code: 1, stdout: []string{"seconds: 30"},
			stderr: "notice: document 2: Widget/w: pod template at spec.template not mutated: mutate does not know this kind (the webhook still mutates the pods created from it)\nerror: --strict: 1 object(s) not placed\n"},
		{name: "--strict without notices", args: []string{"mutate", "--strict"}, stdin: deployment, code: 0, stdout: []string{"seconds: 30"}},
		{name: "data risks on stderr, not failures even with --strict", args: []string{"mutate", "--strict"}, stdin: deployment, code: 0,
			stderr: "warning: document 1: Deployment/pgw: container \"pushgateway\" runs without --persistence.file"},
		{name: "--strict and a denial: exit 1", args: []string{"mutate", "--strict", "--policy", reject}, stdin: typo + "---\n" + widget, code: 1, stderr: `Invalid value: "30sec"`},
		{name: "unknown flag", args: []string{"mutate", "--nope"}, code: 2, stderr: "unknown flag"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: "unknown command"},
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"dev"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			// Indentation is the YAML encoder's business: compare with white space folded.
			flat := strings.Join(strings.Fields(out.String()), " ")
			for _, s := range tc.stdout {
				if !strings.Contains(flat, strings.Join(strings.Fields(s), " ")) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			if tc.jsonOut && !json.Valid(out.Bytes()) {
				t.Errorf("stdout is not JSON:\n%s", out.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderr)
			}
		})
	}
}
