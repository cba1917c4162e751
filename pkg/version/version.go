// Package version is stamped at build time with -ldflags -X.
package version

// Version is the release, set by `make build` and the Dockerfile.
var Version = "dev"
