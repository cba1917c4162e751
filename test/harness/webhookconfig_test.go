package harness

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// `make run` and the harness's own tests register DefaultWebhookConfigs; the e2e suite
// registers the chart's rendering. This keeps the two identical, so what `make run` shows is
// what the e2e suite proved.
func TestDefaultWebhookConfigsMatchChart(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the chart with helm")
	}
	chart, err := ChartWebhookConfigs(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := []byte("ca")
	got := DefaultWebhookConfigs().PointAt("https://127.0.0.1:1", ca)
	want := chart.PointAt("https://127.0.0.1:1", ca)
	if got.Mutating.Name != want.Mutating.Name || !equality.Semantic.DeepEqual(got.Mutating.Webhooks, want.Mutating.Webhooks) {
		g, _ := yaml.Marshal(got.Mutating.Webhooks)
		w, _ := yaml.Marshal(want.Mutating.Webhooks)
		t.Errorf("mutating webhooks differ\nharness:\n%s\nchart:\n%s", g, w)
	}
	if want.Validating == nil {
		t.Fatal("chart renders no ValidatingWebhookConfiguration")
	}
	if got.Validating.Name != want.Validating.Name || !equality.Semantic.DeepEqual(got.Validating.Webhooks, want.Validating.Webhooks) {
		g, _ := yaml.Marshal(got.Validating.Webhooks)
		w, _ := yaml.Marshal(want.Validating.Webhooks)
		t.Errorf("validating webhooks differ\nharness:\n%s\nchart:\n%s", g, w)
	}
}
