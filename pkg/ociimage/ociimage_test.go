package ociimage

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// dockerfileFinal is what the Dockerfile's last stage declares.
type dockerfileFinal struct {
	From       string
	Copies     []string // destinations of COPY
	User       string
	Entrypoint []string
	Cmd        []string
}

// parseFinalStage reads the instructions after the last FROM (JSON-form ENTRYPOINT and CMD,
// which is what the Dockerfile uses and what makes them exec-form).
func parseFinalStage(t *testing.T, df string) dockerfileFinal {
	t.Helper()
	var st dockerfileFinal
	for _, line := range strings.Split(df, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(kw) {
		case "FROM":
			st = dockerfileFinal{From: strings.Fields(rest)[0]}
		case "COPY":
			f := strings.Fields(rest)
			st.Copies = append(st.Copies, f[len(f)-1])
		case "USER":
			st.User = rest
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				t.Fatalf("%s %s: not exec form: %v", kw, rest, err)
			}
			if kw == "CMD" {
				st.Cmd = v
			} else {
				st.Entrypoint = v
			}
		case "ADD", "RUN", "WORKDIR", "ENV", "VOLUME":
			if st.From != "" {
				st.Copies = append(st.Copies, "unexpected "+kw+" "+rest)
			}
		}
	}
	return st
}

// TestWebhookImageMatchesDockerfile checks that `make image` (Webhook, built here without a
// container engine) and `docker build` (the Dockerfile's final stage) make the same image: a
// scratch base, so the layer holds exactly the COPYed files; the same user, entrypoint and
// command.
func TestWebhookImageMatchesDockerfile(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	want := parseFinalStage(t, string(df))
	if want.From != "scratch" {
		t.Fatalf("the Dockerfile's final stage is FROM %s: the engine-less image only matches a scratch base", want.From)
	}
	bin := filepath.Join(t.TempDir(), "pushgateway-lifecycle")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(t.TempDir(), "image.tar")
	const ref = "ghcr.io/pushgateway-lifecycle/pushgateway-lifecycle:test"
	if err := WriteTarball(tar, Webhook(bin, ref, "amd64")); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(tar, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := Contents(img)
	if err != nil {
		t.Fatal(err)
	}
	var wantFiles []string
	for _, c := range want.Copies {
		// COPY of a file from the build stage: root-owned, the build's 0755.
		wantFiles = append(wantFiles, c+" 755 0:0")
	}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Errorf("image files %q, Dockerfile COPYs %q", files, wantFiles)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != want.User || want.User != "65532:65532" {
		t.Errorf("user: image %q, Dockerfile %q (want 65532:65532)", cf.Config.User, want.User)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, want.Entrypoint) {
		t.Errorf("entrypoint: image %q, Dockerfile %q", cf.Config.Entrypoint, want.Entrypoint)
	}
	if !reflect.DeepEqual(cf.Config.Cmd, want.Cmd) {
		t.Errorf("cmd: image %q, Dockerfile %q", cf.Config.Cmd, want.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tar) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ref {
		t.Errorf("tarball manifest tags %+v, want [%s]", m, ref)
	}
}

// TestReproducible: the same inputs make the same image digest (fixed timestamps).
func TestReproducible(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for i := 0; i < 2; i++ {
		img, err := Build(Pushgateway(bin, "quay.io/prometheus/pushgateway:v1.11.3", "amd64"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same inputs: %s and %s", digests[0], digests[1])
	}
	img, _ := Build(Pushgateway(bin, "quay.io/prometheus/pushgateway:v1.11.3", "amd64"))
	files, err := Contents(img)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/bin/ 755 0:0", "/bin/pushgateway 755 0:0", "/pushgateway/ 755 65534:65534"}
	if !reflect.DeepEqual(files, want) {
		t.Errorf("Pushgateway image files %q, want %q", files, want)
	}
}

func TestRelativePathRejected(t *testing.T) {
	if _, err := Build(Spec{Ref: "x:y", Files: []File{{Path: "etc"}}}); err == nil || !strings.Contains(err.Error(), `"etc"`) {
		t.Errorf("relative path: %v, want an error naming it", err)
	}
}
