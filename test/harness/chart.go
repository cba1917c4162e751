package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ChartReleaseName is the release name the tests render the chart with: the chart's full name
// is then "pushgateway-lifecycle", the ConfigName of the harness's own configurations.
const ChartReleaseName = "pushgateway-lifecycle"

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// HelmPath returns <repo>/bin/helm, installing it there first (`go install` from the Go module
// proxy, the same command as `make helm`) when it is missing. HELM_VERSION overrides the pin.
func HelmPath() (string, error) {
	helmOnce.Do(func() {
		root, err := fixtures.RepoRoot()
		if err != nil {
			helmErr = err
			return
		}
		bin := filepath.Join(root, "bin")
		helmPath = filepath.Join(bin, "helm")
		if _, err := os.Stat(helmPath); err == nil {
			return
		}
		version := os.Getenv("HELM_VERSION")
		if version == "" {
			version = "v3.22.0"
		}
		fmt.Fprintf(os.Stderr, "harness: bin/helm missing, installing helm %s with go install (a few minutes) ...\n", version)
		cmd := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+version)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("harness: helm not found at %s and `go install helm.sh/helm/v3/cmd/helm@%s` failed (run `make helm`): %w\n%s", helmPath, version, err, out)
		}
	})
	return helmPath, helmErr
}

// ChartDir is the chart's directory in the repository.
func ChartDir() (string, error) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "charts", "pushgateway-lifecycle"), nil
}

// RenderChart runs `helm template` on the chart as release ChartReleaseName in namespace (the
// harness's WebhookNamespace when empty), with the given values files and then values (nil:
// none), and returns the rendered YAML.
func RenderChart(namespace string, values map[string]any, valuesFiles ...string) ([]byte, error) {
	helm, err := HelmPath()
	if err != nil {
		return nil, err
	}
	chart, err := ChartDir()
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace = WebhookNamespace
	}
	args := []string{"template", ChartReleaseName, chart, "--namespace", namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	if values != nil {
		b, err := yaml.Marshal(values)
		if err != nil {
			return nil, err
		}
		f, err := os.CreateTemp("", "chart-values-*.yaml")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.Remove(f.Name()) }()
		if _, err := f.Write(b); err != nil {
			_ = f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		args = append(args, "--values", f.Name())
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %v: %w\n%s", args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// SplitObjects decodes multi-document YAML into objects, skipping empty documents.
func SplitObjects(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// ChartWebhookConfigs renders the chart with values (nil: the chart's defaults) and returns
// its MutatingWebhookConfiguration and ValidatingWebhookConfiguration exactly as rendered
// (clientConfig still naming the in-cluster Service; Validating is nil when the chart renders
// none).
func ChartWebhookConfigs(values map[string]any) (WebhookConfigs, error) {
	out, err := RenderChart("", values)
	if err != nil {
		return WebhookConfigs{}, err
	}
	objs, err := SplitObjects(out)
	if err != nil {
		return WebhookConfigs{}, err
	}
	var c WebhookConfigs
	for _, o := range objs {
		switch o.GetKind() {
		case "MutatingWebhookConfiguration":
			c.Mutating = &admissionv1.MutatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, c.Mutating, true); err != nil {
				return WebhookConfigs{}, fmt.Errorf("chart's MutatingWebhookConfiguration: %w", err)
			}
		case "ValidatingWebhookConfiguration":
			c.Validating = &admissionv1.ValidatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, c.Validating, true); err != nil {
				return WebhookConfigs{}, fmt.Errorf("chart's ValidatingWebhookConfiguration: %w", err)
			}
		}
	}
	if c.Mutating == nil {
		return WebhookConfigs{}, errors.New("the chart rendered no MutatingWebhookConfiguration")
	}
	return c, nil
}

// ChartWebhookConfigsAt is ChartWebhookConfigs with every webhook's clientConfig rewritten to
// baseURL plus the webhook's path, trusting caBundle: what the e2e suite registers, so that the
// selectors, rules and policies it proves are the chart's own.
func ChartWebhookConfigsAt(baseURL string, caBundle []byte, values map[string]any) (WebhookConfigs, error) {
	c, err := ChartWebhookConfigs(values)
	if err != nil {
		return WebhookConfigs{}, err
	}
	return c.PointAt(baseURL, caBundle), nil
}
