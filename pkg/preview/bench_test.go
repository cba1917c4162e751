package preview

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// upstreamDeployment is the Deployment of the upstream chart's default render.
func upstreamDeployment(b *testing.B) string {
	data, err := fixtures.ReadUpstreamChart("default.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var dep string
	for _, d := range strings.Split(string(data), "\n---") {
		if strings.Contains(d, "kind: Deployment") {
			dep = d
		}
	}
	return dep
}

func benchStream(b *testing.B, stream []byte) {
	pol := policy.Default()
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := Stream(bytes.NewReader(stream), io.Discard, pol, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if !res[0].Mutated {
			b.Fatal("not mutated")
		}
	}
}

// BenchmarkStream mutates the upstream chart's Deployment repeated 100 times in one stream,
// the shape of `make bench`'s offline section (1,000 Deployments) at a tenth of the size.
func BenchmarkStream(b *testing.B) {
	benchStream(b, []byte(strings.Repeat(upstreamDeployment(b)+"\n---\n", 100)))
}

// BenchmarkStreamList: the same 100 Deployments as the items of one List, as
// `kubectl get deploy -o yaml` and `-o json` print them.
func BenchmarkStreamList(b *testing.B) {
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(upstreamDeployment(b)), &obj); err != nil {
		b.Fatal(err)
	}
	items := make([]any, 100)
	for i := range items {
		items[i] = obj
	}
	list := map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items}
	b.Run("yaml", func(b *testing.B) {
		y, err := yaml.Marshal(list)
		if err != nil {
			b.Fatal(err)
		}
		benchStream(b, y)
	})
	b.Run("json", func(b *testing.B) {
		j, err := json.MarshalIndent(list, "", "    ")
		if err != nil {
			b.Fatal(err)
		}
		benchStream(b, append(j, '\n'))
	})
}
