// Package harness runs the real thing for tests: kube-apiserver and etcd (through
// controller-runtime's envtest), optionally kube-controller-manager, and the real
// pushgateway-lifecycle binary serving its webhook on 127.0.0.1 with envtest's serving
// certificate. The e2e suite, the chart tests, the benchmark, the reliability tests and
// `make run` all start their control plane through this package, so they prove the same setup.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

// UpstreamChartDir is the folder of the upstream chart's renderings inside the repository.
func UpstreamChartDir() (string, error) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, fixtures.UpstreamChartRel), nil
}

var (
	binDirOnce sync.Once
	binDir     string
	binDirErr  error
)

// K8sBinDir returns the directory holding kube-apiserver, kube-controller-manager, kubectl
// and etcd, by running hack/k8s-binaries.sh (which honours KUBEBUILDER_ASSETS and returns at
// once when the binaries exist; otherwise it builds them, which takes minutes the first time).
func K8sBinDir() (string, error) {
	binDirOnce.Do(func() {
		root, err := fixtures.RepoRoot()
		if err != nil {
			binDirErr = err
			return
		}
		var stdout bytes.Buffer
		cmd := exec.Command(filepath.Join(root, "hack", "k8s-binaries.sh"))
		cmd.Dir = root
		cmd.Stdout = &stdout
		// The script's progress goes to stderr: shown, because a first build is long.
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			binDirErr = fmt.Errorf("harness: hack/k8s-binaries.sh failed: %w", err)
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		binDir = strings.TrimSpace(lines[len(lines)-1])
		for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kubectl", "etcd"} {
			if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
				binDirErr = fmt.Errorf("harness: %s missing from %s", b, binDir)
				return
			}
		}
	})
	return binDir, binDirErr
}
