package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	pglmetrics "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
)

// dashboardFile is the chart's Grafana dashboard, shipped verbatim in its ConfigMap.
var dashboardFile = filepath.Join("..", "..", "charts", "pushgateway-lifecycle", "dashboards", "pushgateway-lifecycle.json")

// metricPrefixes are the namespaces of what this binary exports: its own metrics and
// controller-runtime's webhook metrics. A token with one of them in a query must name a metric
// the binary registers.
var metricPrefixes = []string{"pushgateway_lifecycle_", "controller_runtime_"}

// scrapeSeries are the series Prometheus itself writes for every target it scrapes, never in
// a registry; with the job selector they are this binary's too.
var scrapeSeries = []string{"up"}

var promIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// registeredMetrics is every metric name the binary's registry describes, read from the
// registry itself (this test links the same packages as the binary, so every init() that
// registers a collector has run): a vector without observed labels still has its Desc. The
// certificate rotator registers its metrics when it starts (--cert-rotation, the chart's
// default); the test does what it does.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	pglmetrics.RegisterCertificateMetrics()
	c, ok := crmetrics.Registry.(prometheus.Collector)
	if !ok {
		t.Fatalf("controller-runtime's registry is a %T, not a prometheus.Collector", crmetrics.Registry)
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names[m[1]] = true
	}
	return names
}

// known reports whether name is a registered metric or one of a histogram's series.
func known(names map[string]bool, name string) bool {
	if names[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && names[base] {
			return true
		}
	}
	return false
}

// dashboardQueries returns every PromQL expression of the dashboard: panel targets (in rows
// too) and query variables, each with where it sits.
func dashboardQueries(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	out := map[string]string{}
	type panel struct {
		Title   string            `json:"title"`
		Type    string            `json:"type"`
		Panels  []json.RawMessage `json:"panels"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	}
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, r := range ps {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out["panel "+p.Title+" "+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		out["variable "+v.Name] = q.Query
	}
	return out
}

// TestDashboardQueriesNameExportedMetrics: every query of the shipped dashboard reads at least
// one metric this binary exports, and every metric name it mentions is one the binary's
// registry describes, so a renamed metric breaks this test rather than a panel.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	names := registeredMetrics(t)
	// The registry must be the binary's, not an empty one: the product's and the webhook's.
	for _, must := range []string{"pushgateway_lifecycle_pods_total", "controller_runtime_webhook_latency_seconds", "pushgateway_lifecycle_certificate_expiry_timestamp_seconds"} {
		if !names[must] {
			t.Fatalf("the registry does not describe %s; it has %d metrics", must, len(names))
		}
	}
	queries := dashboardQueries(t, raw)
	if len(queries) < 10 {
		t.Fatalf("only %d queries in %s", len(queries), dashboardFile)
	}
	used := map[string]bool{}
	for where, q := range queries {
		own := 0
		for _, tok := range promIdent.FindAllString(stripStrings(q), -1) {
			switch {
			case slices.Contains(scrapeSeries, tok):
				own++ // the scrape of this binary's metrics endpoint
			case slices.ContainsFunc(metricPrefixes, func(p string) bool { return strings.HasPrefix(tok, p) }):
				own++
				if !known(names, tok) {
					t.Errorf("%s: %q is not a metric the binary exports (query %s)", where, tok, q)
				}
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(tok, "_bucket"), "_count"), "_sum")] = true
			}
		}
		if own == 0 {
			t.Errorf("%s reads no metric of the binary: %s", where, q)
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{
		"pushgateway_lifecycle_pods_total", "controller_runtime_webhook_latency_seconds",
		"pushgateway_lifecycle_workloads_total", "pushgateway_lifecycle_certificate_expiry_timestamp_seconds",
		"pushgateway_lifecycle_handoff_hold_seconds", "pushgateway_lifecycle_handoff_held_pods",
		"pushgateway_lifecycle_unprotected_pods",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// promString is a PromQL string literal.
var promString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// stripStrings blanks PromQL string literals, so that a label value ("/mutate-v1-pod") or a
// legend is not read as a metric name.
func stripStrings(q string) string { return promString.ReplaceAllString(q, `""`) }
