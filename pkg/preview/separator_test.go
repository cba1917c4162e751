package preview

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// Issue 26 (minor): a comment on the separator line itself ("--- # Source: ...") was dropped
// with the separator; it now opens its document, changed or not.
func TestSeparatorCommentsKept(t *testing.T) {
	in := "--- # Source: a.yaml\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app.kubernetes.io/name: pushgateway}\nspec:\n  containers:\n  - name: pushgateway\n--- # Source: b.yaml\r\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
	var out bytes.Buffer
	res, err := Stream(strings.NewReader(in), &out, policy.Default(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].Mutated || res[1].Mutated {
		t.Fatalf("results %+v, want the Pod mutated and the ConfigMap not", res)
	}
	for _, c := range []string{"# Source: a.yaml\n", "# Source: b.yaml\r\n"} {
		if !strings.Contains(out.String(), c) {
			t.Errorf("output lost %q:\n%s", c, out.String())
		}
	}
}
