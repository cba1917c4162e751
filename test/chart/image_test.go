package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

const versionPkg = "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/version.Version"

// No Docker engine here: build the binary the way the Dockerfile does and check that it is
// what a scratch image can run (static, no cgo) and that the version stamp works; and check
// that the Dockerfile really builds it that way.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pushgateway-lifecycle")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X "+versionPkg+"=v9.8.7-test", "-o", bin, "./cmd/pushgateway-lifecycle")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, info)
	}
	if !strings.Contains(string(info), "CGO_ENABLED=0") {
		t.Errorf("go version -m does not show CGO_ENABLED=0:\n%s", info)
	}
	if _, err := exec.LookPath("file"); err == nil {
		out, err := exec.Command("file", bin).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "statically linked") {
			t.Errorf("not statically linked: %s", out)
		}
	} else {
		t.Log("`file` not installed: static linking checked through go version -m only")
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v9.8.7-test") {
		t.Errorf("version stamp: %q, %v", out, err)
	}

	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"CGO_ENABLED=0", "FROM scratch", "USER 65532:65532",
		"-X " + versionPkg + "=${VERSION}", "./cmd/pushgateway-lifecycle", "ARG VERSION"} {
		if !strings.Contains(string(df), s) {
			t.Errorf("Dockerfile lacks %q", s)
		}
	}
}
