// Command image builds the webhook's container image without a container engine: the static
// binary that `make build` produced, in the layout and with the metadata of the Dockerfile's
// final stage (see pkg/ociimage.Webhook), written as a docker-archive tarball that
// `docker load`, `ctr images import` and `kind load image-archive` read.
//
//	go run ./hack/image -binary bin/pushgateway-lifecycle -ref ghcr.io/...:v1 -o bin/image.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/ociimage"
)

func main() {
	binary := flag.String("binary", "bin/pushgateway-lifecycle", "static webhook binary to put into the image")
	ref := flag.String("ref", "", "image reference the tarball carries (required)")
	out := flag.String("o", "bin/pushgateway-lifecycle-image.tar", "output tarball")
	arch := flag.String("arch", runtime.GOARCH, "image architecture (the binary's GOARCH)")
	flag.Parse()
	if *ref == "" {
		fmt.Fprintln(os.Stderr, "image: -ref is required")
		os.Exit(2)
	}
	if err := ociimage.WriteTarball(*out, ociimage.Webhook(*binary, *ref, *arch)); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s\n", *out, *ref)
}
