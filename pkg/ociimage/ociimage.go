// Package ociimage builds single-layer container images from files on disk, without a container
// engine: `make image` builds the webhook's image with it (what the Dockerfile builds, from the
// same static binary), and the real-node tests build the Pushgateway and pause images with it.
// The output is a docker-archive tarball, which `ctr images import` and `docker load` read, or
// (index.go) a multi-platform OCI image index written as an OCI image layout.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of the image's only layer.
type File struct {
	// Path inside the image, absolute ("/pushgateway-lifecycle").
	Path string
	// Source is a file on disk to copy; empty makes a directory.
	Source string
	// Mode is the permission bits (0o755 for a binary, 0o1777 for /tmp).
	Mode int64
	// UID and GID own the entry.
	UID, GID int
}

// Spec describes an image.
type Spec struct {
	// Ref is the reference the tarball carries ("quay.io/prometheus/pushgateway:v1.11.3").
	Ref string
	// Files are the layer's entries, written in order (parents before children).
	Files []File
	// User, Entrypoint, Cmd, WorkingDir, ExposedPorts and Labels go into the image config.
	User         string
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	ExposedPorts []string
	Labels       map[string]string
	// OS and Architecture of the image (default linux and the binary's GOARCH given by caller).
	OS, Architecture string
}

// epoch keeps the build reproducible: the same inputs make the same digest.
var epoch = time.Unix(0, 0).UTC()

// Build returns the image described by spec, with Docker media types (what a docker-archive
// tarball carries).
func Build(spec Spec) (v1.Image, error) { return build(spec, types.DockerLayer) }

func build(spec Spec, layerType types.MediaType) (v1.Image, error) {
	layerTar, err := layer(spec.Files)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(layerType))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = spec.OS, spec.Architecture
	if cf.OS == "" {
		cf.OS = "linux"
	}
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = spec.User
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.WorkingDir = spec.WorkingDir
	cf.Config.Labels = spec.Labels
	// What every base image sets; Kubernetes passes it on to the process.
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if len(spec.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// WriteTarball builds spec and writes it to path as a docker-archive tarball.
func WriteTarball(path string, spec Spec) error {
	img, err := Build(spec)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(spec.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", spec.Ref, err)
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func layer(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image file %q: path must be absolute", f.Path)
		}
		h := &tar.Header{
			Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Uid: f.UID, Gid: f.GID,
			ModTime: epoch, Format: tar.FormatPAX,
		}
		if f.Source == "" {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, err
		}
		h.Typeflag = tar.TypeReg
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Contents lists an image's files as "path mode uid:gid" (directories end in /), sorted: what
// a test compares between two builds of the same image.
func Contents(img v1.Image) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				_ = rc.Close()
				return nil, err
			}
			out = append(out, fmt.Sprintf("/%s %o %d:%d", strings.TrimPrefix(h.Name, "/"), h.Mode&0o7777, h.Uid, h.Gid))
		}
		_ = rc.Close()
	}
	sort.Strings(out)
	return out, nil
}

// WebhookUID is the webhook image's user and group: distroless's "nonroot", numeric so that
// Kubernetes can check runAsNonRoot without reading /etc/passwd.
const WebhookUID = 65532

// Webhook is the webhook's image as the Dockerfile's final stage builds it: FROM scratch, the
// static binary as /pushgateway-lifecycle, USER 65532:65532, the binary as entrypoint and
// `serve` as its default argument. No shell, no libc, nothing else.
func Webhook(binary, ref, arch string) Spec {
	return Spec{
		Ref:          ref,
		Files:        []File{{Path: "/pushgateway-lifecycle", Source: binary, Mode: 0o755}},
		User:         fmt.Sprintf("%d:%d", WebhookUID, WebhookUID),
		Entrypoint:   []string{"/pushgateway-lifecycle"},
		Cmd:          []string{"serve"},
		Architecture: arch,
	}
}

// Pushgateway is an image of the Prometheus Pushgateway binary with the upstream image's
// metadata (quay.io/prometheus/pushgateway: USER nobody, WORKDIR /pushgateway, ENTRYPOINT
// /bin/pushgateway, EXPOSE 9091), but without the busybox base.
func Pushgateway(binary, ref, arch string) Spec {
	return Spec{
		Ref: ref,
		Files: []File{
			{Path: "/bin", Mode: 0o755},
			{Path: "/bin/pushgateway", Source: binary, Mode: 0o755},
			{Path: "/pushgateway", Mode: 0o755, UID: 65534, GID: 65534},
		},
		User:         "65534",
		Entrypoint:   []string{"/bin/pushgateway"},
		WorkingDir:   "/pushgateway",
		ExposedPorts: []string{"9091/tcp"},
		Architecture: arch,
	}
}

// Pause is the sandbox image: a static pause binary as /pause.
func Pause(binary, ref, arch string) Spec {
	return Spec{
		Ref:          ref,
		Files:        []File{{Path: "/pause", Source: binary, Mode: 0o755}},
		User:         "65535:65535",
		Entrypoint:   []string{"/pause"},
		Architecture: arch,
	}
}
