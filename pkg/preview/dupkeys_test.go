package preview

import (
	"strconv"
	"strings"
	"testing"
)

func TestCheckDuplicates(t *testing.T) {
	deep := func(d int) string { return strings.Repeat("[", d) + `"x"` + strings.Repeat("]", d) }
	cases := []struct {
		name, in, wantErr string
	}{
		{"flat", `{"a":1,"b":2}`, ""},
		{"same key in sibling objects", `{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]}`, ""},
		{"key text inside a value", `{"a":"b","b":"a,\"a\":1"}`, ""},
		{"top level", `{"a":1,"a":2}`, `key "a" appears twice`},
		{"nested", `{"spec":{"template":{"spec":{"x":1,"x":2}}}}`, `key "x" appears twice`},
		{"in an array element", `{"items":[{"a":1},{"b":1,"b":2}]}`, `key "b" appears twice`},
		{"after a nested value", `{"a":{"b":[1,{"c":2}]},"a":3}`, `key "a" appears twice`},
		{"escaped spelling", `{"name":1,"n\u0061me":2}`, `key "name" appears twice`},
		{"deep but allowed", `{"x":` + deep(maxJSONDepth-1) + `}`, ""},
		{"too deep", `{"x":` + deep(maxJSONDepth) + `}`, "nested deeper than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDuplicates([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// BenchmarkCheckDuplicatesDepth prints the cost per byte at two depths of the same size
// (issue 26 finding 6: 6.8 s at depth 1000 and 23.8 s at depth 4000 for 7 MiB before the
// single pass). Linear means ns/op about equal across the two.
func BenchmarkCheckDuplicatesDepth(b *testing.B) {
	for _, depth := range []int{10, 1000, 4000} {
		doc := []byte(`{"kind":"Pod","x":` + strings.Repeat(`[{"k":1},`, depth) + `"` + strings.Repeat("a", 1<<20) + `"` + strings.Repeat("]", depth) + `}`)
		b.Run("depth="+strconv.Itoa(depth), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if err := checkDuplicates(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
