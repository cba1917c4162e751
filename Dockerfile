# syntax=docker/dockerfile:1
# Static binary on scratch: no shell, no libc, no other file, non-root. `make docker-build` passes
# VERSION. `make image` builds the same image without a container engine (pkg/ociimage;
# pkg/ociimage's tests check that both agree: files, user, entrypoint, command).
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads are cached in their own layer: source edits do not re-download.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/version.Version=${VERSION}" \
      -o /out/pushgateway-lifecycle ./cmd/pushgateway-lifecycle

# scratch rather than distroless/static:nonroot: the binary needs neither CA certificates (it only
# talks to the API server, with the in-cluster CA) nor /etc/passwd (the user is numeric), and
# scratch needs no registry, so the engine-less build has the same files and metadata.
FROM scratch
COPY --from=build /out/pushgateway-lifecycle /pushgateway-lifecycle
# The numeric user lets Kubernetes verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/pushgateway-lifecycle"]
CMD ["serve"]
