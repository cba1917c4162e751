package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/ociimage"
)

// PushgatewayImageRef is the upstream chart's image reference, under which the node imports
// the Pushgateway image built from bin/pushgateway, so that the chart's manifests run unchanged.
const PushgatewayImageRef = "quay.io/prometheus/pushgateway:v1.11.3"

var (
	nodeBinOnce sync.Once
	nodeBinDir  string
	nodeBinErr  error
)

// NodeBinDir returns bin/k8s/<version>, with kubelet, kube-scheduler and kube-proxy built there
// by hack/node-binaries.sh (which also provides the control plane's four).
func NodeBinDir() (string, error) {
	nodeBinOnce.Do(func() {
		root, err := fixtures.RepoRoot()
		if err != nil {
			nodeBinErr = err
			return
		}
		var stdout bytes.Buffer
		cmd := exec.Command(filepath.Join(root, "hack", "node-binaries.sh"))
		cmd.Dir = root
		cmd.Stdout = &stdout
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			nodeBinErr = fmt.Errorf("harness: hack/node-binaries.sh failed: %w", err)
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		nodeBinDir = strings.TrimSpace(lines[len(lines)-1])
		for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kubectl", "etcd", "kubelet", "kube-scheduler", "kube-proxy"} {
			if _, err := os.Stat(filepath.Join(nodeBinDir, b)); err != nil {
				nodeBinErr = fmt.Errorf("harness: %s missing from %s", b, nodeBinDir)
				return
			}
		}
	})
	return nodeBinDir, nodeBinErr
}

// imageDir is bin/node-images, where the node's image tarballs are built.
func imageDir() (string, error) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, "bin", "node-images")
	return d, os.MkdirAll(d, 0o755)
}

// goBuild builds a static binary of pkg, a package of the test module (test/), into out.
func goBuild(pkg, out string) error {
	root, err := fixtures.RepoRoot()
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, pkg)
	cmd.Dir = filepath.Join(root, "test")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return os.Rename(tmp, out)
}

// nodeImages builds the images every node needs: the pause image.
func nodeImages() ([]string, error) {
	dir, err := imageDir()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "pause")
	if err := goBuild("./harness/cmd/pause", bin); err != nil {
		return nil, err
	}
	tar := filepath.Join(dir, "pause.tar")
	return []string{tar}, ociimage.WriteTarball(tar, ociimage.Pause(bin, PauseImage, runtime.GOARCH))
}

// PushgatewayImage builds the Pushgateway image tarball (from hack/pushgateway.sh's binary)
// under PushgatewayImageRef and returns its path.
func PushgatewayImage() (string, error) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(root, "hack", "pushgateway.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("hack/pushgateway.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := strings.TrimSpace(lines[len(lines)-1])
	dir, err := imageDir()
	if err != nil {
		return "", err
	}
	tar := filepath.Join(dir, "pushgateway.tar")
	return tar, ociimage.WriteTarball(tar, ociimage.Pushgateway(bin, PushgatewayImageRef, runtime.GOARCH))
}

// ChartDefaultImage is the chart's default image reference: image.repository and the chart's
// appVersion (image.tag is empty by default).
func ChartDefaultImage() (string, error) {
	dir, err := ChartDir()
	if err != nil {
		return "", err
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	for f, v := range map[string]any{"Chart.yaml": &chart, "values.yaml": &values} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			return "", fmt.Errorf("%s: %w", f, err)
		}
	}
	tag := values.Image.Tag
	if tag == "" {
		tag = chart.AppVersion
	}
	return values.Image.Repository + ":" + tag, nil
}

// WebhookImage builds the webhook's image tarball from the binary (BuildBinary when empty)
// under the chart's default reference, and returns its path and the reference.
func WebhookImage(binary string) (tar, ref string, err error) {
	if binary == "" {
		if binary, err = BuildBinary(); err != nil {
			return "", "", err
		}
	}
	if ref, err = ChartDefaultImage(); err != nil {
		return "", "", err
	}
	dir, err := imageDir()
	if err != nil {
		return "", "", err
	}
	tar = filepath.Join(dir, "pushgateway-lifecycle.tar")
	return tar, ref, ociimage.WriteTarball(tar, ociimage.Webhook(binary, ref, runtime.GOARCH))
}
