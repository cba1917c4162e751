package preview

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// sequential is Stream without the parallel window: Stream's writer given one Document
// after another, the reference the parallel stream must match byte for byte.
func sequential(t *testing.T, in []byte, pol *policy.Policy) ([]byte, []Result, error) {
	t.Helper()
	docs, err := SplitDocuments(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := writeStream(docs, &out, Options{}, func(i int) ([]byte, []Result, error) { return Document(docs[i], pol) })
	return out.Bytes(), res, err
}

// TestStreamKeepsOrder runs a long stream of every golden input's documents, mixed, through
// the parallel Stream and through sequential: the same bytes, the same results in the same
// order, the same error; also with an invalid document in the middle, where Stream stops.
func TestStreamKeepsOrder(t *testing.T) {
	var mixed bytes.Buffer
	for _, p := range []string{"all-kinds.yaml", "custom-kinds.yaml", "kubectl-get-deploy-list.json", "kubectl-get-deploy-list.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", p))
		if err != nil {
			t.Fatal(err)
		}
		mixed.WriteString("---\n")
		mixed.Write(b)
		if !bytes.HasSuffix(b, []byte("\n")) {
			mixed.WriteString("\n")
		}
	}
	one := mixed.String()
	long := strings.Repeat(one, 20)
	broken := strings.Repeat(one, 10) + "---\nkind: [unclosed\n" + strings.Repeat(one, 10)
	for name, in := range map[string]string{"long": long, "broken in the middle": broken} {
		t.Run(name, func(t *testing.T) {
			wantOut, wantRes, wantErr := sequential(t, []byte(in), policy.Default())
			var got bytes.Buffer
			gotRes, gotErr := Stream(strings.NewReader(in), &got, policy.Default(), Options{})
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("error %v, want %v", gotErr, wantErr)
			}
			if len(wantRes) < 50 {
				t.Fatalf("the stream has only %d results: not a test of ordering", len(wantRes))
			}
			if !reflect.DeepEqual(gotRes, wantRes) {
				t.Fatalf("results differ from one Document after another (%d vs %d)", len(gotRes), len(wantRes))
			}
			if !bytes.Equal(got.Bytes(), wantOut) {
				t.Fatalf("output differs from one Document after another (%d vs %d bytes)", got.Len(), len(wantOut))
			}
		})
	}
}
