package preview

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/fixtures"
)

// fuzzFixtures reads the upstream chart renders from ../shared/fixtures beside the repository.
func fuzzFixtures(f *testing.F) [][]byte {
	files, err := fixtures.UpstreamChart()
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// streamSeeds are YAML shapes that trip hand-written document splitters and node patchers.
var streamSeeds = []string{
	"",
	"---\n---\n",
	"--- # Source: x\napiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    pushgateway-lifecycle.io/inject: \"true\"\nspec:\n  containers:\n  - name: pushgateway\n",
	"kind: Pod\nmetadata: {labels: {pushgateway-lifecycle.io/inject: 'true'}, annotations: {pushgateway-lifecycle.io/pre-stop-sleep: 9999999999999999999s}}\nspec: {containers: [{name: a}, {name: a}]}\n",
	"kind: Deployment\nspec:\n  template: &t\n    metadata: {labels: {app.kubernetes.io/name: pushgateway}}\n    spec: {containers: [{name: pushgateway}]}\nother: *t\n",
	"kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          labels: {pushgateway-lifecycle.io/inject: \"true\"}\n        spec:\n          containers: [{name: x}]\n",
	"kind: Pod\nspec: null\n",
	"kind: Pod\nspec:\n  containers: \"no\"\n",
	"- a\n- b\n",
	"just a scalar\n",
	"kind: [Pod]\n",
	"kind: Pod\nmetadata:\n  labels:\n    pushgateway-lifecycle.io/inject: \"true\"\n  annotations: ~\nspec:\n  containers:\n  - name: pushgateway\n    lifecycle: {preStop: {exec: {command: [sh]}}}\n",
	"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"pushgateway-lifecycle.io/inject\":\"true\"}},\"spec\":{\"containers\":[{\"name\":\"p\"}]}}\n",
	"kind: Pod\n\tbad: tab\n",
	"kind: Pod\nmetadata: {labels: {pushgateway-lifecycle.io/inject: \"true\"}}\nspec:\n  containers:\n  - name: \"~1/x\"\n",
}

// FuzzStream: the mutate reader never panics; it fails only with an input error or a
// denial (anything else is our bug, not the user's); and what it writes is a fixed point:
// mutating the output again changes nothing, as Helm post-rendering twice must not.
func FuzzStream(f *testing.F) {
	for _, d := range fuzzFixtures(f) {
		f.Add(d)
	}
	for _, s := range streamSeeds {
		f.Add([]byte(s))
	}
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		_, err := Stream(bytes.NewReader(data), &out, pol, Options{})
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) && !errors.Is(err, ErrDenied) {
				t.Fatalf("neither an input error nor a denial: %v", err)
			}
			if errors.As(err, &ie) {
				return
			}
		}
		_, _ = Stream(bytes.NewReader(data), io.Discard, pol, Options{Diff: true})
		if err != nil {
			return // denied: the output is the input for that document, no fixed point to check
		}
		var again bytes.Buffer
		if _, err := Stream(bytes.NewReader(out.Bytes()), &again, pol, Options{}); err != nil {
			t.Fatalf("the output does not read back: %v\ninput:\n%s\noutput:\n%s", err, data, out.Bytes())
		}
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("mutating the output again changes it\ninput:\n%s\nfirst:\n%s\nsecond:\n%s", data, out.Bytes(), again.Bytes())
		}
	})
}
