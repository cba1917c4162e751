package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// twoBinaries writes a stand-in binary per architecture: different bytes, so that a test can
// tell which one each platform's layer holds.
func twoBinaries(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		p := filepath.Join(dir, "pushgateway-lifecycle-linux-"+arch)
		if err := os.WriteFile(p, []byte("binary for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
		out[arch] = p
	}
	return out
}

func webhookIndexLayout(t *testing.T, bins map[string]string, ref string) (string, string) {
	t.Helper()
	idx, err := BuildIndex(ref, Webhook(bins["amd64"], ref, "amd64"), Webhook(bins["arm64"], ref, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	h, err := WriteLayout(dir, idx)
	if err != nil {
		t.Fatal(err)
	}
	return dir, h.String()
}

// `make image`: one OCI image index for linux/amd64 and linux/arm64 in an OCI layout whose
// index.json names both platforms; each platform's manifest is OCI, its config says its
// architecture and its layer holds that architecture's binary.
func TestWebhookIndexNamesBothPlatforms(t *testing.T) {
	bins := twoBinaries(t)
	const ref = "ghcr.io/pushgateway-lifecycle/pushgateway-lifecycle:test"
	dir, digest := webhookIndexLayout(t, bins, ref)

	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		MediaType   string            `json:"mediaType"`
		Annotations map[string]string `json:"annotations"`
		Manifests   []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Platform  struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	if index.MediaType != string(types.OCIImageIndex) || index.Annotations[AnnotationRefName] != ref {
		t.Errorf("index.json mediaType %q, annotations %v", index.MediaType, index.Annotations)
	}
	var platforms []string
	for _, m := range index.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		if m.MediaType != string(types.OCIManifestSchema1) {
			t.Errorf("%s/%s: manifest media type %s", m.Platform.OS, m.Platform.Architecture, m.MediaType)
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("index.json names %v, want linux/amd64 and linux/arm64", platforms)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		t.Error(err)
	}

	// Read back as crane and containerd read a layout.
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d.String() != digest {
		t.Errorf("index digest %s, WriteLayout returned %s", d, digest)
	}
	for _, m := range index.Manifests {
		arch := m.Platform.Architecture
		im, err := p.Image(mustHash(t, m.Digest))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := im.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != arch || cf.OS != "linux" || cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/pushgateway-lifecycle"}) {
			t.Errorf("%s: config os %s arch %s user %s entrypoint %v", arch, cf.OS, cf.Architecture, cf.Config.User, cf.Config.Entrypoint)
		}
		if mt, _ := im.MediaType(); mt != types.OCIManifestSchema1 {
			t.Errorf("%s: image media type %s", arch, mt)
		}
		layers, err := im.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers, %v", arch, len(layers), err)
		}
		if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
			t.Errorf("%s: layer media type %s", arch, mt)
		}
		if got := layerFile(t, layers[0], "pushgateway-lifecycle"); got != "binary for "+arch {
			t.Errorf("%s: the layer's /pushgateway-lifecycle is %q", arch, got)
		}
	}
}

// Two builds of the same binaries give the same index digest and byte-identical layouts, so
// a release's digest can be rebuilt and checked from its commit.
func TestWebhookIndexIsReproducible(t *testing.T) {
	bins := twoBinaries(t)
	const ref = "ghcr.io/pushgateway-lifecycle/pushgateway-lifecycle:test"
	a, da := webhookIndexLayout(t, bins, ref)
	b, db := webhookIndexLayout(t, bins, ref)
	if da != db {
		t.Fatalf("two builds: index digests %s and %s", da, db)
	}
	fa, fb := layoutFiles(t, a), layoutFiles(t, b)
	if ka, kb := slices.Sorted(maps.Keys(fa)), slices.Sorted(maps.Keys(fb)); !slices.Equal(ka, kb) {
		t.Fatalf("files differ: %v vs %v", ka, kb)
	}
	for name, content := range fa {
		if !bytes.Equal(content, fb[name]) {
			t.Errorf("%s differs between two builds", name)
		}
	}
	// The digest depends on the binaries: a different arm64 binary is a different index.
	if err := os.WriteFile(bins["arm64"], []byte("another arm64 binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, dc := webhookIndexLayout(t, bins, ref); dc == da {
		t.Errorf("changing the arm64 binary kept the index digest %s", dc)
	}
}

func TestBuildIndexRefusesBadPlatforms(t *testing.T) {
	bins := twoBinaries(t)
	if _, err := BuildIndex("r:1"); err == nil {
		t.Error("an index without platforms was built")
	}
	if _, err := BuildIndex("r:1", Webhook(bins["amd64"], "r:1", "amd64"), Webhook(bins["arm64"], "r:1", "amd64")); err == nil {
		t.Error("an index with linux/amd64 twice was built")
	}
	if _, err := BuildIndex("r:1", Webhook(bins["amd64"], "r:1", "")); err == nil {
		t.Error("an index with an empty architecture was built")
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// layerFile returns the content of name in the layer.
func layerFile(t *testing.T, l v1.Layer, name string) string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("no %s in the layer", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

func layoutFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
