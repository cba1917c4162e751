package preview

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// Issue 26 finding 2: two Deployments share `containers: &shared`; only the first is a
// Pushgateway. Before aliases were expanded, the patch of the first wrote through the
// anchor and the second gained a preStop sleep of 30 s above its own grace of 10 s.
func TestAliasesAreNotWrittenThrough(t *testing.T) {
	const in = `apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: pgw}
  spec:
    template:
      metadata:
        labels: {app.kubernetes.io/name: pushgateway}
      spec:
        containers: &shared
        - name: pushgateway
          image: prom/pushgateway
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: other}
  spec:
    template:
      metadata:
        labels: {app: other}
      spec:
        terminationGracePeriodSeconds: 10
        containers: *shared
`
	out, res, err := Document([]byte(in), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Mutated || len(res[0].Items) != 2 || !res[0].Items[0].Mutated || res[0].Items[1].Mutated {
		t.Fatalf("results = %+v, want pgw mutated and other not", res[0].Items)
	}
	// Decoded, as the API server would receive it: an alias in the output is the anchored
	// node itself, so a text check alone would miss a hook written through it.
	var list struct {
		Items []struct {
			Spec struct {
				Template struct {
					Spec corev1.PodSpec `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := sigsyaml.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("%d items in the output, want 2", len(list.Items))
	}
	if c := list.Items[0].Spec.Template.Spec.Containers; len(c) != 1 || c[0].Lifecycle == nil || c[0].Lifecycle.PreStop == nil {
		t.Errorf("pgw has no preStop:\n%s", out)
	}
	if c := list.Items[1].Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != "prom/pushgateway" || c[0].Lifecycle != nil {
		t.Errorf("other's containers = %+v, want its own unchanged container (no hook written through the alias):\n%s", c, out)
	}
	if strings.Contains(string(out), "*shared") || strings.Contains(string(out), "&shared") {
		t.Errorf("the alias is not expanded:\n%s", out)
	}
}

// An unchanged document keeps its aliases: it is passed through byte for byte.
func TestAliasesKeptWhenNothingChanges(t *testing.T) {
	const in = "kind: List\nitems:\n- &d {kind: ConfigMap, metadata: {name: a}}\n- *d\n"
	out, _, err := Document([]byte(in), policy.Default())
	if err != nil || string(out) != in {
		t.Fatalf("got %q, %v; want the input unchanged", out, err)
	}
}

func TestAliasInputErrors(t *testing.T) {
	laughs := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 'b'; i <= 'h'; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*%c, ", i-1), 10), ", ")
		laughs += fmt.Sprintf("%c: &%c [%s]\n", i, i, refs)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"a List that contains itself":     {"kind: List\nitems: &a\n- kind: List\n  items: *a\n", "names a node that contains it"},
		"a document that is its own item": {"&r\nkind: List\nitems:\n- *r\n", "names a node that contains it"},
		"billion laughs":                  {"kind: ConfigMap\n" + laughs, "expand to more than"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Document([]byte(tc.in), policy.Default())
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want an input error (exit 2) containing %q", err, tc.want)
			}
		})
	}
}
