package preview

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// goldenInputs are the owners' rendered upstream chart (read where CI puts it, beside the
// repository) and our own streams in testdata/.
func goldenInputs(t *testing.T) map[string]string {
	in := map[string]string{}
	files, err := fixtures.UpstreamChart()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		in["upstream-"+filepath.Base(p)] = p
	}
	for _, ext := range []string{".yaml", ".json"} {
		local, _ := filepath.Glob("testdata/*" + ext)
		for _, p := range local {
			if !strings.HasSuffix(p, ".golden"+ext) {
				in[filepath.Base(p)] = p
			}
		}
	}
	if len(in) == 0 {
		t.Fatal("no golden inputs")
	}
	return in
}

// TestGolden compares the output for each input with testdata/NAME.golden.EXT, and checks
// the properties of checkStream on it: a second pass changes nothing, JSON stays JSON and is
// exactly the input with the webhook's patch applied.
func TestGolden(t *testing.T) {
	for file, path := range goldenInputs(t) {
		ext := filepath.Ext(file)
		name := strings.TrimSuffix(file, ext)
		t.Run(file, func(t *testing.T) {
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := Stream(bytes.NewReader(in), &out, policy.Default(), Options{}); err != nil {
				t.Fatal(err)
			}
			if got := checkStream(t, in, policy.Default()); !bytes.Equal(got, out.Bytes()) {
				t.Fatal("two runs differ")
			}
			golden := filepath.Join("testdata", name+".golden"+ext)
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/preview -run TestGolden -update)", err)
			}
			if !bytes.Equal(want, out.Bytes()) {
				t.Errorf("%s differs; got:\n%s", golden, out.String())
			}
		})
	}
}

func TestUpstreamWorkloadsArePatched(t *testing.T) {
	files, err := fixtures.UpstreamChart()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		f := filepath.Base(p)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res, err := Stream(bytes.NewReader(data), &out, policy.Default(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		mutated := 0
		for _, r := range res {
			if r.Mutated {
				mutated++
				if r.Kind != "Deployment" && r.Kind != "StatefulSet" {
					t.Errorf("%s: mutated a %s", f, r.Kind)
				}
			}
		}
		if mutated != 1 {
			t.Errorf("%s: %d documents mutated, want the one workload", f, mutated)
		}
		s := out.String()
		for _, want := range []string{"preStop:\n              sleep:\n                seconds: 30", "terminationGracePeriodSeconds: 45"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: output lacks %q", f, want)
			}
		}
		// Everything else passes through byte for byte.
		inDocs, _ := SplitDocuments(bytes.NewReader(data))
		outDocs, _ := SplitDocuments(strings.NewReader(s))
		if len(inDocs) != len(outDocs) {
			t.Fatalf("%s: %d documents in, %d out", f, len(inDocs), len(outDocs))
		}
		for i := range inDocs {
			if !res[i].Mutated && !bytes.Equal(inDocs[i], outDocs[i]) {
				t.Errorf("%s: document %d (%s) changed although not mutated", f, i, res[i].Kind)
			}
		}
	}
}

func TestStreamErrors(t *testing.T) {
	reject, err := policy.Parse([]byte("onInvalid: reject\n"))
	if err != nil {
		t.Fatal(err)
	}
	bad := `apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec:
  template:
    metadata:
      labels: {app.kubernetes.io/name: pushgateway}
      annotations: {pushgateway-lifecycle.io/pre-stop-sleep: soon}
    spec:
      containers: [{name: pushgateway, image: p}]
`
	var out bytes.Buffer
	_, err = Stream(strings.NewReader(bad+"---\n"+strings.Replace(bad, "name: a", "name: b", 1)), &out, reject, Options{})
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "Deployment a") || !strings.Contains(err.Error(), "Deployment b") ||
		!strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("err = %v, want both denials naming the value", err)
	}
	_, err = Stream(strings.NewReader("a: [unclosed\n"), &out, policy.Default(), Options{})
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Errorf("err = %v, want an InputError", err)
	}
	_, err = Stream(strings.NewReader("kind: Pod\nspec: {containers: 3}\n"), &out, policy.Default(), Options{})
	if !errors.As(err, &ie) {
		t.Errorf("err = %v, want an InputError for an undecodable pod", err)
	}
}

func TestDiff(t *testing.T) {
	in := `kind: Pod
metadata:
  name: p
  labels: {app.kubernetes.io/name: pushgateway}
spec:
  containers:
  - name: pushgateway
    image: p
`
	var out bytes.Buffer
	if _, err := Stream(strings.NewReader(in), &out, policy.Default(), Options{Diff: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--- input", "+++ mutated", "lifecycle:\n+", "+  terminationGracePeriodSeconds: 45", "+    pushgateway-lifecycle.io/status: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diff lacks %q:\n%s", want, out.String())
		}
	}
}
