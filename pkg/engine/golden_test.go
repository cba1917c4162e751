package engine

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// TestGolden mutates every testdata/*.yaml pod (with testdata/<name>.policy if present, else
// the built-in policy) and compares with testdata/<name>.golden.yaml: the decision as comments,
// then the mutated pod.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.yaml") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict(data, &pod); err != nil {
				t.Fatal(err)
			}
			pol := policy.Default()
			if pd, err := os.ReadFile(filepath.Join("testdata", name+".policy")); err == nil {
				if pol, err = policy.Parse(pd); err != nil {
					t.Fatal(err)
				}
			}
			out, d := Mutate(&pod, pod.Namespace, pol)
			var buf bytes.Buffer
			fmt.Fprintf(&buf, "# outcome: %s\n", d.Outcome)
			for _, w := range d.Warnings {
				fmt.Fprintf(&buf, "# warning: %s\n", w)
			}
			if d.Outcome == OutcomeDenied {
				fmt.Fprintf(&buf, "# denied: %s\n", d.DenyMessage())
			}
			y, err := yaml.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(y)
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/engine -run TestGolden -update)", err)
			}
			if !bytes.Equal(want, buf.Bytes()) {
				t.Errorf("%s differs from the output; got:\n%s", golden, buf.String())
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden inputs in testdata")
	}
}
