package chart

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/admissionpolicy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// mapAPI is what `.Capabilities.APIVersions` must hold for mode: admissionPolicy.
const mapAPI = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"

// skipWithoutMAP skips a test of mode: admissionPolicy on a release that does not serve
// MutatingAdmissionPolicy v1 (1.36+, make test-versions).
func skipWithoutMAP(t *testing.T) {
	t.Helper()
	if minor, err := harness.KubeMinor(); err != nil {
		t.Fatal(err)
	} else if minor < 36 {
		t.Skipf("Kubernetes 1.%d does not serve MutatingAdmissionPolicy v1 (1.36+)", minor)
	}
}

// renderWith runs helm template with extra arguments (harness.RenderChart has none).
func renderWith(t *testing.T, values map[string]any, extra ...string) ([]byte, error) {
	t.Helper()
	helm, err := harness.HelmPath()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := harness.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"template", harness.ChartReleaseName, dir, "--namespace", namespace, "--values", f}, extra...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &renderError{err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

type renderError struct {
	err    error
	stderr string
}

func (e *renderError) Error() string { return e.err.Error() + ": " + e.stderr }

// admissionPolicyValues are the policies the chart's admissionPolicy mode is compared on.
var admissionPolicyValues = map[string]string{
	"default": "",
	"reject-replace-exec": `defaults: {preStopSleep: 20s, shutdownBudget: 10, preStopAction: exec}
limits: {minPreStopSleep: 1s, maxPreStopSleep: 2m, maxTerminationGracePeriod: 1h0m0s}
existingPreStop: replace
onInvalid: reject`,
	"selector": `selector:
  matchLabels: {app: pushgateway, team: obs}
  matchExpressions:
  - {key: tier, operator: NotIn, values: [test, dev]}
  - {key: canary, operator: DoesNotExist}
  - {key: owner, operator: Exists}`,
	"empty-selector": "selector: {}\nonInvalid: warn",
}

// The chart in mode: admissionPolicy renders exactly what `admission-policy` generates for
// the same policy (names and the release namespace's exclusion aside), and nothing else.
func TestAdmissionPolicyModeRendersTheGenerator(t *testing.T) {
	for name, polText := range admissionPolicyValues {
		t.Run(name, func(t *testing.T) {
			var polValues map[string]any
			if err := yaml.Unmarshal([]byte(polText), &polValues); err != nil {
				t.Fatal(err)
			}
			// The startup check (a hook Job, its RBAC and its binding) is tested on its own
			// (TestStartupCheckAdmissionPolicyMode); here, the generator's output alone.
			values := map[string]any{"mode": "admissionPolicy", "startupCheck": map[string]any{"enabled": false}}
			if polValues != nil {
				values["policy"] = polValues
			}
			out, err := renderWith(t, values, "--api-versions", mapAPI)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := harness.SplitObjects(out)
			if err != nil {
				t.Fatal(err)
			}
			r := rendered(objs)
			want := []string{"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicy",
				"ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicyBinding"}
			sort.Strings(want)
			if !slices.Equal(r.kinds(), want) {
				t.Fatalf("kinds %v, want only the policies %v (no Deployment, Service, Secret, RBAC)", r.kinds(), want)
			}
			pol, err := policy.Parse([]byte(polText))
			if err != nil {
				t.Fatal(err)
			}
			gen, err := admissionpolicy.Generate(pol, admissionpolicy.Options{Name: harness.ChartReleaseName, ExcludedNamespaces: []string{namespace}})
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range gen.Objects() {
				u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(g)
				if err != nil {
					t.Fatal(err)
				}
				kind, _, _ := unstructuredString(u, "kind")
				name, _, _ := unstructuredString(u, "metadata", "name")
				var found bool
				for _, o := range r.all(kind) {
					if o.GetName() != name {
						continue
					}
					found = true
					if !equality.Semantic.DeepEqual(o.Object["spec"], u["spec"]) {
						gy, _ := yaml.Marshal(u["spec"])
						cy, _ := yaml.Marshal(o.Object["spec"])
						t.Errorf("%s %s: the chart's spec differs from the generator's: %s", kind, name, firstDiff(string(cy), string(gy)))
					}
				}
				if !found {
					t.Errorf("%s %s not rendered", kind, name)
				}
			}
		})
	}
}

func unstructuredString(u map[string]any, path ...string) (string, bool, error) {
	var cur any = u
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// firstDiff shows the first differing line of two renderings.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "line " + strconv.Itoa(i+1) + ":\n  chart:     " + al[i] + "\n  generator: " + bl[i]
		}
	}
	return "lengths differ"
}

// Without the API the chart refuses to render, saying why; and a policy the server would
// refuse is refused at render time too.
func TestAdmissionPolicyModeFailsClearly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		extra  []string
		want   string
	}{
		{"no MutatingAdmissionPolicy API", map[string]any{"mode": "admissionPolicy"}, nil, "needs the MutatingAdmissionPolicy API"},
		{"fractional duration", map[string]any{"mode": "admissionPolicy", "policy": map[string]any{"defaults": map[string]any{"preStopSleep": "1.5m"}}},
			[]string{"--api-versions", mapAPI}, "policy.defaults.preStopSleep"},
		{"sleep above the limit", map[string]any{"mode": "admissionPolicy", "policy": map[string]any{"defaults": map[string]any{"preStopSleep": "400s"}}},
			[]string{"--api-versions", mapAPI}, "policy.defaults.preStopSleep: must be within limits"},
		{"unknown onInvalid (the schema)", map[string]any{"mode": "admissionPolicy", "policy": map[string]any{"onInvalid": "ignore"}},
			[]string{"--api-versions", mapAPI}, "/policy/onInvalid"},
		{"maxTerminationGracePeriod below maxPreStopSleep (the template)", map[string]any{"mode": "admissionPolicy", "policy": map[string]any{"limits": map[string]any{"maxTerminationGracePeriod": "60s"}}},
			[]string{"--api-versions", mapAPI}, "policy.limits.maxTerminationGracePeriod: must be >= limits.maxPreStopSleep"},
		{"unknown mode", map[string]any{"mode": "sidecar"}, nil, "mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderWith(t, tc.values, tc.extra...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a render error containing %q", err, tc.want)
			}
		})
	}
}

// helm lint --strict passes in admissionPolicy mode. helm 3.22's lint has no --api-versions:
// it parses every template but reports the capability check's fail as INFO and renders no
// further; the rendering itself is checked above and by the server-side dry-run below.
func TestHelmLintStrictAdmissionPolicy(t *testing.T) {
	helm, err := harness.HelmPath()
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := harness.ChartDir()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte("mode: admissionPolicy\npolicy:\n  onInvalid: reject\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"lint", "--strict", dir, "--values", f}
	if lintHasAPIVersions(helm) {
		args = append(args, "--api-versions", mapAPI)
	}
	if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, out)
	}
}

func lintHasAPIVersions(helm string) bool {
	out, _ := exec.Command(helm, "lint", "--help").CombinedOutput()
	return bytes.Contains(out, []byte("--api-versions"))
}

// Both installs of mode: admissionPolicy (the chart, the kustomize overlay) are accepted by a
// real kube-apiserver 1.37's server-side dry-run: its CEL compilation and type checking.
func TestAdmissionPolicyServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	skipWithoutMAP(t)
	cp := harness.NewControlPlane(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	apply := func(t *testing.T, manifests []byte) {
		t.Helper()
		stdout, stderr, err := cp.Kubectl(ctx, bytes.NewReader(manifests), "apply", "--server-side", "--dry-run=server", "--field-manager=chart-test", "-f", "-")
		if err != nil {
			t.Fatalf("server-side dry-run rejected:\n%s\n%s", stderr, stdout)
		}
		if n := strings.Count(stdout, "(server dry run)"); n != 6 {
			t.Errorf("%d objects accepted, want 6:\n%s", n, stdout)
		}
	}
	for name, polText := range admissionPolicyValues {
		t.Run("chart/"+name, func(t *testing.T) {
			var polValues map[string]any
			_ = yaml.Unmarshal([]byte(polText), &polValues)
			values := map[string]any{"mode": "admissionPolicy", "startupCheck": map[string]any{"enabled": false}}
			if polValues != nil {
				values["policy"] = polValues
			}
			out, err := renderWith(t, values, "--api-versions", mapAPI)
			if err != nil {
				t.Fatal(err)
			}
			apply(t, out)
		})
	}
	t.Run("kustomize/config/admission-policy", func(t *testing.T) {
		root, _ := fixtures.RepoRoot()
		out, err := exec.Command(kubectl(t), "kustomize", filepath.Join(root, "config", "admission-policy")).Output()
		if err != nil {
			t.Fatal(err)
		}
		apply(t, out)
	})
}
