package ociimage

import (
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AnnotationRefName is the OCI annotation naming the reference an index is published under.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// ociImage rewrites an image with the OCI media types: an OCI index may only hold OCI
// manifests for every consumer to accept it (containerd, registries and crane do not all take
// Docker schema 2 manifests inside an OCI index).
func ociImage(spec Spec) (v1.Image, error) {
	img, err := build(spec, types.OCILayer)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// BuildIndex returns the OCI image index of specs, one manifest per spec in the given order,
// each descriptor carrying its spec's platform. ref is recorded as the index's
// org.opencontainers.image.ref.name. The same inputs make the same digest: every timestamp
// is the epoch and nothing else varies between builds.
func BuildIndex(ref string, specs ...Spec) (v1.ImageIndex, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("image index %s: no platform", ref)
	}
	seen := map[string]bool{}
	var adds []mutate.IndexAddendum
	for _, s := range specs {
		if s.OS == "" {
			s.OS = "linux"
		}
		if s.Architecture == "" {
			return nil, fmt.Errorf("image index %s: a platform without architecture", ref)
		}
		p := s.OS + "/" + s.Architecture
		if seen[p] {
			return nil, fmt.Errorf("image index %s: platform %s twice", ref, p)
		}
		seen[p] = true
		img, err := ociImage(s)
		if err != nil {
			return nil, fmt.Errorf("image %s for %s: %w", ref, p, err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: s.OS, Architecture: s.Architecture},
		}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, map[string]string{AnnotationRefName: ref}).(v1.ImageIndex), nil
}

// WriteLayout writes idx as an OCI image layout in dir, replacing what was there: oci-layout,
// blobs/sha256/ and an index.json that is the image index itself, so it names every platform
// (push it with `crane push --index DIR REF`). It returns the index's digest, which is what a
// registry serves for the tag.
func WriteLayout(dir string, idx v1.ImageIndex) (v1.Hash, error) {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return v1.Hash{}, err
	}
	if _, err := layout.Write(tmp, idx); err != nil {
		_ = os.RemoveAll(tmp)
		return v1.Hash{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}
