package preview

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// checkStream runs the properties every output of mutate must have, for the golden cases
// and for the fuzzer alike, and returns the output (nil for input mutate refuses):
//   - a fixed point: mutating the output again changes nothing (Helm post-rendering twice);
//   - one output document per input document, and a JSON document stays JSON with as many
//     values;
//   - each JSON object is exactly its input with the recorded patches applied by an
//     independent RFC 6902 implementation (evanphx/json-patch), the List's own fields and the
//     items that were not changed included: the byte splicing adds nothing and loses nothing.
func checkStream(t testing.TB, in []byte, pol *policy.Policy) []byte {
	t.Helper()
	var out bytes.Buffer
	_, err := Stream(bytes.NewReader(in), &out, pol, Options{})
	var ie *InputError
	switch {
	case err == nil:
	case errors.As(err, &ie):
		return nil
	case errors.Is(err, ErrDenied):
	default:
		t.Fatalf("neither an input error nor a denial: %v", err)
	}
	if err == nil {
		var again bytes.Buffer
		if _, err := Stream(bytes.NewReader(out.Bytes()), &again, pol, Options{}); err != nil {
			t.Fatalf("the output does not read back: %v\ninput:\n%s\noutput:\n%s", err, in, out.Bytes())
		}
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("mutating the output again changes it\ninput:\n%s\nfirst:\n%s\nsecond:\n%s", in, out.Bytes(), again.Bytes())
		}
	}
	inDocs, err := SplitDocuments(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	outDocs, err := SplitDocuments(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(inDocs) != len(outDocs) {
		t.Fatalf("%d documents in, %d out\ninput:\n%s\noutput:\n%s", len(inDocs), len(outDocs), in, out.Bytes())
	}
	for i, doc := range inDocs {
		inSpans, ok := jsonValues(doc)
		if !ok {
			continue
		}
		outSpans, ok := jsonValues(outDocs[i])
		if !ok || len(outSpans) != len(inSpans) {
			t.Fatalf("document %d was JSON (%d values) and is not any more:\n%s", i+1, len(inSpans), outDocs[i])
		}
		_, results, _ := Document(doc, pol)
		if len(results) != len(inSpans) {
			t.Fatalf("document %d: %d results for %d JSON values", i+1, len(results), len(inSpans))
		}
		for k, sp := range inSpans {
			inV, outV := doc[sp[0]:sp[1]], outDocs[i][outSpans[k][0]:outSpans[k][1]]
			var want, got any
			if err := json.Unmarshal(inV, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(outV, &got); err != nil {
				t.Fatalf("document %d value %d: %v\n%s", i+1, k, err, outV)
			}
			want = applyResult(t, want, results[k])
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("document %d value %d is not its input with the webhook's patch applied\nwant %v\ngot  %v\noutput:\n%s", i+1, k, want, got, outV)
			}
		}
	}
	return out.Bytes()
}

// applyResult applies r's patches to the decoded object v with evanphx/json-patch, item by
// item for a List.
func applyResult(t testing.TB, v any, r Result) any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if items, ok := m["items"].([]any); ok && isListKind(r.Kind) {
		j := 0
		for idx, it := range items {
			if _, ok := it.(map[string]any); !ok {
				continue
			}
			if j >= len(r.Items) {
				t.Fatalf("%s: more object items than results", r.Kind)
			}
			items[idx] = applyResult(t, it, r.Items[j])
			j++
		}
		return m
	}
	for _, p := range r.Patches {
		patch, err := jsonpatch.DecodePatch(p)
		if err != nil {
			t.Fatalf("patch %s: %v", p, err)
		}
		doc, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		doc, err = patch.Apply(doc)
		if err != nil {
			t.Fatalf("patch %s does not apply: %v", p, err)
		}
		v = nil
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatal(err)
		}
	}
	return v
}
