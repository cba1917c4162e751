package preview

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/fixtures"
)

// BenchmarkStream mutates the upstream chart's Deployment repeated 100 times in one stream,
// the shape of `make bench`'s offline section (1,000 Deployments) at a tenth of the size.
func BenchmarkStream(b *testing.B) {
	dir, err := fixtures.Dir()
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "upstream-chart", "default.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var dep string
	for _, d := range strings.Split(string(data), "\n---") {
		if strings.Contains(d, "kind: Deployment") {
			dep = d
		}
	}
	stream := []byte(strings.Repeat(dep+"\n---\n", 100))
	pol := policy.Default()
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Stream(bytes.NewReader(stream), io.Discard, pol, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
