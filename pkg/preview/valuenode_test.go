package preview

import (
	"reflect"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// TestValueNodeIsEncodes holds the cache to what yaml.Node.Encode makes of each value, on the
// first call and on later ones, and shows that a caller's change to its copy (spellFlowNulls
// writes into nulls) never reaches the next caller.
func TestValueNodeIsEncodes(t *testing.T) {
	patch := []byte(`[
		{"op":"add","path":"/spec/terminationGracePeriodSeconds","value":45},
		{"op":"add","path":"/spec/containers/0/lifecycle","value":{"preStop":{"sleep":{"seconds":30}}}},
		{"op":"add","path":"/metadata/annotations/a","value":"true"},
		{"op":"add","path":"/metadata/annotations/b","value":"line one\nline two"},
		{"op":"add","path":"/metadata/annotations/c","value":[null,{"x":null},1.5,"30"]}
	]`)
	ops, err := parsePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		var want yaml.Node
		if err := want.Encode(op.value); err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			got, err := valueNode(&op)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("%s, call %d: the node differs from Encode's", op.path, round+1)
			}
			got.Value, got.Content = "changed by the caller", nil
		}
	}
}
