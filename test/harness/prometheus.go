package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

// PrometheusScrapeInterval is the interruption matrix's scrape interval: what a push must
// outlive on a Pushgateway without persistence to be stored at all.
const PrometheusScrapeInterval = 5 * time.Second

// prometheusAddr is where Prometheus listens, inside the first node's network namespace.
const prometheusAddr = "127.0.0.1:9090"

// PrometheusBinary returns the real Prometheus that hack/prometheus.sh provides (built from the
// Go module proxy on first use, about 8 to 19 minutes on 2 cores; cached in bin/prometheus).
func PrometheusBinary() (string, error) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "prometheus.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/prometheus.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// Prometheus is a real Prometheus server running on the first node, as a process of the node
// (in its network namespace: it reaches pod IPs on every node as a Prometheus pod would).
type Prometheus struct {
	n       *Node
	proc    *Process
	Version string
}

// prometheusConfig discovers Pushgateways through the API server exactly as a ServiceMonitor
// of the Prometheus Operator does (role endpointslice, keep the Service by its label and the
// port by its name, honor_labels so that the pushed job and instance stay): every endpoint in
// the slice is a target, a terminating one included, for as long as the slice lists it.
const prometheusConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[2]s
scrape_configs:
  - job_name: serviceMonitor/pushgateway
    honor_labels: true
    kubernetes_sd_configs:
      - role: endpointslice
        kubeconfig_file: %[3]s
    relabel_configs:
      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name]
        regex: prometheus-pushgateway
        action: keep
      - source_labels: [__meta_kubernetes_endpointslice_port_name]
        regex: http
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_service_name]
        target_label: service
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
`

// StartPrometheus starts Prometheus on the node with the matrix's scrape configuration and
// waits until it is ready.
func (n *Node) StartPrometheus(bin string) (*Prometheus, error) {
	dir := filepath.Join(n.Dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(prometheusConfig, PrometheusScrapeInterval, PrometheusScrapeInterval-time.Second, filepath.Join(n.Dir, "admin-inner.kubeconfig"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := n.Exec("prometheus", bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+prometheusAddr,
		// A day covers any run; the TSDB goes with the node's directory.
		"--storage.tsdb.retention.time=1d", "--log.level=warn")
	if err != nil {
		return nil, err
	}
	n.Processes = append(n.Processes, p)
	if err := n.waitHTTP("prometheus", "http://"+prometheusAddr+"/-/ready", 2*time.Minute); err != nil {
		return nil, err
	}
	pr := &Prometheus{n: n, proc: p}
	var info struct {
		Data struct {
			Version string `json:"version"`
		} `json:"data"`
	}
	if err := pr.get(context.Background(), "/api/v1/status/buildinfo", nil, &info); err != nil {
		return nil, err
	}
	pr.Version = info.Data.Version
	return pr, nil
}

func (p *Prometheus) get(ctx context.Context, path string, q url.Values, into any) error {
	u := "http://" + prometheusAddr + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.n.HTTPClient(time.Minute).Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("prometheus %s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, into)
}

// Series lists the label sets of every series Prometheus stored that match the selector
// between start and end (the series API: a series is there if any sample was stored).
func (p *Prometheus) Series(ctx context.Context, match string, start, end time.Time) ([]map[string]string, error) {
	var out struct {
		Data []map[string]string `json:"data"`
	}
	q := url.Values{"match[]": {match}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix() + 1)}}
	if err := p.get(ctx, "/api/v1/series", q, &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// Targets returns the active targets' scrape URLs and health, for a failure message.
func (p *Prometheus) Targets(ctx context.Context) (string, error) {
	var out struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/targets", nil, &out); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, t := range out.Data.ActiveTargets {
		fmt.Fprintf(&b, "%s %s %s\n", t.ScrapeURL, t.Health, t.LastError)
	}
	return b.String(), nil
}
