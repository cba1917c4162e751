package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DefaultKubeVersion is hack/k8s-binaries.sh's default release (the Makefile's KUBE_VERSION).
const DefaultKubeVersion = "v1.37.2"

// KubeMinor is the minor version of the Kubernetes release the binaries come from: KUBE_VERSION,
// as hack/k8s-binaries.sh reads it, or its default. `make test-versions` sets it per release,
// so that a test of an API an older release lacks can say so and skip (docs/versions.md).
func KubeMinor() (int, error) {
	v := os.Getenv("KUBE_VERSION")
	if v == "" {
		v = DefaultKubeVersion
	}
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("KUBE_VERSION=%q: want v1.<minor>.<patch>", v)
	}
	m, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, fmt.Errorf("KUBE_VERSION=%q: %w", v, err)
	}
	return m, nil
}
