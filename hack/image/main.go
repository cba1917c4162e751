// Command image builds the webhook's container image without a container engine, from static
// binaries built beforehand (`make image` cross-compiles them), in the layout and with the
// metadata of the Dockerfile's final stage (see pkg/ociimage.Webhook). With -layout it writes
// one OCI image index holding every -platform as an OCI image layout (push it with
// `crane push --index DIR REF`); with -o, a docker-archive tarball of the build machine's
// platform, which `docker load`, `ctr images import` and `kind load image-archive` read.
//
//	go run ./hack/image -ref ghcr.io/...:v1 -layout bin/image -o bin/image.tar \
//	  -platform linux/amd64=bin/image-build/pushgateway-lifecycle-linux-amd64 \
//	  -platform linux/arm64=bin/image-build/pushgateway-lifecycle-linux-arm64
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/ociimage"
)

type platforms []string

func (p *platforms) String() string     { return strings.Join(*p, ",") }
func (p *platforms) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var plats platforms
	flag.Var(&plats, "platform", "OS/ARCH=BINARY: a platform of the index and its static binary (repeat per platform)")
	ref := flag.String("ref", "", "image reference (required)")
	layoutDir := flag.String("layout", "", "write the multi-platform OCI image layout here")
	out := flag.String("o", "", "write a docker-archive tarball of the build machine's platform here")
	flag.Parse()
	if err := run(*ref, *layoutDir, *out, plats); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ref, layoutDir, out string, plats []string) error {
	if ref == "" || len(plats) == 0 || (layoutDir == "" && out == "") {
		return fmt.Errorf("-ref, at least one -platform OS/ARCH=BINARY, and -layout or -o are required")
	}
	var specs []ociimage.Spec
	host := -1
	for _, p := range plats {
		platform, binary, ok := strings.Cut(p, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 || osName != "linux" || arch == "" || binary == "" {
			return fmt.Errorf("-platform %q: want linux/ARCH=BINARY, e.g. linux/arm64=bin/pushgateway-lifecycle-linux-arm64", p)
		}
		if _, err := os.Stat(binary); err != nil {
			return fmt.Errorf("-platform %s: %w", platform, err)
		}
		if arch == runtime.GOARCH {
			host = len(specs)
		}
		specs = append(specs, ociimage.Webhook(binary, ref, arch))
	}
	if layoutDir != "" {
		idx, err := ociimage.BuildIndex(ref, specs...)
		if err != nil {
			return err
		}
		digest, err := ociimage.WriteLayout(layoutDir, idx)
		if err != nil {
			return err
		}
		fmt.Printf("%s: OCI image index %s@%s (%s)\n", layoutDir, ref, digest, strings.Join(platformNames(plats), ", "))
	}
	if out != "" {
		if host < 0 {
			return fmt.Errorf("-o %s: no -platform for this machine's linux/%s", out, runtime.GOARCH)
		}
		if err := ociimage.WriteTarball(out, specs[host]); err != nil {
			return err
		}
		fmt.Printf("%s: docker-archive %s (linux/%s)\n", out, ref, runtime.GOARCH)
	}
	return nil
}

func platformNames(plats []string) []string {
	var out []string
	for _, p := range plats {
		name, _, _ := strings.Cut(p, "=")
		out = append(out, name)
	}
	return out
}
