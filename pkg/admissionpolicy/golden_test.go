package admissionpolicy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// TestGolden generates the policies for every testdata/*.policy (and the built-in policy as
// default) and compares with testdata/<name>.golden.yaml.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.policy")
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, "")
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".policy")
		opts := Options{}
		if in == "" {
			name = "default"
		}
		if strings.HasPrefix(name, "cluster-") {
			opts = Options{ClusterScope: true, ExcludedNamespaces: []string{"monitoring-system"}}
		}
		t.Run(name, func(t *testing.T) {
			pol, err := policy.Load(in)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Generate(pol, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.YAML()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if name == "default" {
				// The kustomize overlay ships the default output itself.
				golden = filepath.Join("..", "..", "config", "admission-policy", "admission-policies.yaml")
			}
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/admissionpolicy -run TestGolden -update)", err)
			}
			if !bytes.Equal(want, got) {
				t.Errorf("%s differs from the output; got:\n%s", golden, got)
			}
		})
	}
}

// TestSelectorCEL covers every operator of a label selector.
func TestSelectorCEL(t *testing.T) {
	for _, tc := range []struct{ policy, want string }{
		{"selector: {}", "true"},
		{"selector: {matchLabels: {app: pg, a: b}}", `('a' in l && l['a'] == 'b') && ('app' in l && l['app'] == 'pg')`},
		{"selector: {matchExpressions: [{key: k, operator: NotIn, values: [x, \"y\"]}, {key: e, operator: Exists}, {key: d, operator: DoesNotExist}]}",
			`!('k' in l && l['k'] in ['x', 'y']) && 'e' in l && !('d' in l)`},
	} {
		pol, err := policy.Parse([]byte(tc.policy))
		if err != nil {
			t.Fatal(err)
		}
		got, err := selectorCEL(pol.Selector, "l")
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.policy, got, tc.want)
		}
	}
}

// TestGenerateRejectsInvalidPolicy: an invalid policy is refused with the field named.
func TestGenerateRejectsInvalidPolicy(t *testing.T) {
	pol := policy.Default()
	pol.OnInvalid = "ignore"
	_, err := Generate(pol, Options{})
	if err == nil || !strings.Contains(err.Error(), "onInvalid") {
		t.Fatalf("got %v, want an error naming onInvalid", err)
	}
}

// TestHelmTemplate keeps the chart's admissionpolicy.yaml equal to HelmTemplate().
func TestHelmTemplate(t *testing.T) {
	got, err := HelmTemplate()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", "..", "charts", "pushgateway-lifecycle", "templates", "admissionpolicy.yaml")
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s is not HelmTemplate()'s output: run go test ./pkg/admissionpolicy -run TestHelmTemplate -update", file)
	}
}
