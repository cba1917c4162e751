# pushgateway-lifecycle: kubebuilder-style Makefile. `make help` lists the targets.

# Go patch release for everything make builds and tests: go1.26.8 (the machine's) has
# standard-library vulnerabilities reachable from the server (crypto/x509, net/http, crypto/tls;
# see `make lint`), fixed in go1.26.9/10. The go command fetches it from the module proxy once.
export GOTOOLCHAIN = go1.26.10

# Pinned versions: a bump is one line here.
KUBE_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.6.16
PUSHGATEWAY_VERSION ?= v1.11.3
HELM_VERSION ?= v3.22.0
GOLANGCI_LINT_VERSION ?= v2.15.0
GOVULNCHECK_VERSION ?= v1.9.0
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMG ?= ghcr.io/pushgateway-lifecycle/pushgateway-lifecycle:$(VERSION)
FUZZTIME ?= 60s
# Platforms of the image index `make image` writes (the binary is pure Go: a cross-compile each).
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
comma := ,
space := $(empty) $(empty)

LOCALBIN ?= $(CURDIR)/bin
export KUBE_VERSION ETCD_VERSION PUSHGATEWAY_VERSION HELM_VERSION GOVULNCHECK_VERSION VULNDB_VERSION
# Tests find the tools through these rather than through PATH.
export PGL_BIN_DIR = $(LOCALBIN)
export PGL_BINARY = $(LOCALBIN)/pushgateway-lifecycle

GO_LDFLAGS := -s -w -X github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/version.Version=$(VERSION)

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...
	go -C test vet ./...

.PHONY: test
test: test-deps ## Run every test: unit, golden, short fuzz, e2e against a real kube-apiserver, chart, termination proof (short).
	go test -count=1 -timeout 20m ./pkg/... ./cmd/... ./internal/...
	@# One package at a time: the control-plane, load and timing tests must not share 2 cores.
	@# test/node is make test-node's (root, Debian's containerd): it used to run here too when
	@# containerd happened to be installed, which made the same command differ between machines
	@# and ran the node suite twice in .ci/run.
	go -C test test -count=1 -p 1 -timeout 40m $$(go -C test list ./... | grep -v '/test/node$$')

# The tools are independent builds from the Go module proxy: side by side, the module downloads
# and links of one overlap the compiles of another (a cold `make test` on 2 cores, docs/reference.md).
.PHONY: test-deps
test-deps:
	@$(MAKE) --no-print-directory -j 4 build k8s-binaries pushgateway helm

.PHONY: test-unit
test-unit: ## Run the unit tests only (no control plane).
	go test -count=1 -short ./pkg/... ./cmd/... ./internal/...

.PHONY: test-e2e
test-e2e: build k8s-binaries helm ## Run the end-to-end suite against a real kube-apiserver.
	go -C test test -count=1 -timeout 20m -v ./e2e/...

.PHONY: test-chart
test-chart: helm k8s-binaries ## Chart and kustomize tests: lint, renders, RBAC, server-side dry-run against kube-apiserver, upgrade keeps certificates.
	go test -count=1 -timeout 10m ./pkg/certs/...
	go -C test test -count=1 -timeout 10m ./chart/...

.PHONY: test-audit
test-audit: build k8s-binaries helm ## Run the `audit` tests against a real kube-apiserver and kube-controller-manager.
	go -C test test -count=1 -timeout 10m -v ./audit/...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 60s).
	FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

.PHONY: bench
bench: build k8s-binaries ## The benchmark suite (engine, direct load vs floor, pod create through the apiserver vs every peer, offline vs kubectl, audit, the handoff informer's memory): writes docs/performance.{md,json} and the README's line; exits 1 when a floor is slower than what it bounds.
	go -C test run ./bench/cmd/bench

.PHONY: bench-peers
bench-peers: build k8s-binaries ## `make bench` with the peers built outside this module (Kyverno, built by hack/kyverno.sh into bin/kyverno/<version>, about 9 minutes the first time).
	./hack/kyverno.sh >/dev/null
	go -C test run ./bench/cmd/bench -peers

.PHONY: bench-handoff-memory
bench-handoff-memory: build k8s-binaries ## The handoff gate's pod index: server memory with 10,000 unrelated pods (writes docs/handoff-memory.md).
	go -C test test -count=1 -timeout 20m -v -run TestHandoffInformerMemory ./e2e/ -args -handoff-memory

.PHONY: bench-soak
bench-soak: build ## 10 minutes at 1,000 req/s against the real server.
	go -C test run ./bench/cmd/bench -soak

.PHONY: soak-reliability
soak-reliability: build k8s-binaries ## 60 s overload at 3x the measured max throughput, pods created through the API server meanwhile.
	go -C test test -count=1 -timeout 20m -v -run TestOverload ./reliability -args -long

.PHONY: soak
soak: bench-soak soak-reliability ## Both soaks: 10 min at 1,000 req/s, then 60 s overload.

.PHONY: proof
proof: build pushgateway ## Run the termination experiment against the real Pushgateway (full scale): writes docs/why.md, docs/proof/ (event logs, timelines).
	go -C test test -count=1 -timeout 15m -v -run TestProof ./termination/ -args -proof

.PHONY: lint
lint: golangci-lint ## Run golangci-lint and govulncheck (against a local copy of the vulnerability database).
	$(LOCALBIN)/golangci-lint run ./...
	cd test && $(LOCALBIN)/golangci-lint run ./...
	./hack/govulncheck.sh ./...

##@ Build

.PHONY: build
build: ## Build the static binary into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(LOCALBIN)/pushgateway-lifecycle ./cmd/pushgateway-lifecycle

.PHONY: run
run: build k8s-binaries ## Start a local control plane with the webhook registered (foreground, Ctrl-C stops all).
	@# Built, not `go run`: go run exits 1 on Ctrl-C, which make would report as a failure.
	go -C test build -o $(LOCALBIN)/local-cluster ./harness/cmd/run
	$(LOCALBIN)/local-cluster $(RUN_ARGS)

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image.
	docker push $(IMG)

##@ Deployment

.PHONY: manifests
manifests: helm ## Render the chart's default manifests to stdout.
	$(LOCALBIN)/helm template pushgateway-lifecycle charts/pushgateway-lifecycle --namespace pushgateway-lifecycle-system

.PHONY: helm-lint
helm-lint: helm ## Lint the Helm chart (strict).
	$(LOCALBIN)/helm lint --strict charts/pushgateway-lifecycle

.PHONY: deploy
deploy: k8s-binaries ## Deploy with kustomize to the cluster in ~/.kube/config.
	$$(./hack/k8s-binaries.sh)/kubectl apply -k config/default

.PHONY: undeploy
undeploy: k8s-binaries ## Remove the kustomize deployment.
	$$(./hack/k8s-binaries.sh)/kubectl delete --ignore-not-found -k config/default

##@ Dependencies (built from the Go module proxy into ./bin, keyed by version, reused)

.PHONY: k8s-binaries
k8s-binaries: ## kube-apiserver, kube-controller-manager, kubectl, etcd into bin/k8s/<version>.
	./hack/k8s-binaries.sh >/dev/null

.PHONY: pushgateway
pushgateway: ## The real Pushgateway into bin/pushgateway/<version>.
	./hack/pushgateway.sh >/dev/null

.PHONY: helm
helm: $(LOCALBIN)/helm-$(HELM_VERSION) ## Helm into bin/.
$(LOCALBIN)/helm-$(HELM_VERSION):
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	touch $@

.PHONY: golangci-lint
golangci-lint: $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) ## golangci-lint into bin/.
$(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION):
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	touch $@


.PHONY: test-admission-policy
test-admission-policy: build k8s-binaries ## The generated admission policies store the same pods as the webhook (real kube-apiserver; also in `make test`).
	go -C test test -count=1 -timeout 15m -v ./admissionpolicy/...

##@ Real node (root; docs/real-node.md)

.PHONY: image
image: ## The webhook's image without a container engine: bin/image/ (OCI layout, one index for IMAGE_PLATFORMS) and bin/pushgateway-lifecycle-image.tar (docker-archive, this machine's platform), reference IMG.
	@for p in $(IMAGE_PLATFORMS); do \
	  echo "building $$p"; \
	  CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath -ldflags '$(GO_LDFLAGS)' \
	    -o $(LOCALBIN)/image-build/pushgateway-lifecycle-$${p%/*}-$${p#*/} ./cmd/pushgateway-lifecycle || exit 1; \
	done
	go run ./hack/image -ref $(IMG) -layout $(LOCALBIN)/image -o $(LOCALBIN)/pushgateway-lifecycle-image.tar \
	  $(foreach p,$(IMAGE_PLATFORMS),-platform $(p)=$(LOCALBIN)/image-build/pushgateway-lifecycle-$(subst /,-,$(p)))

.PHONY: docker-buildx
docker-buildx: ## The same index with Docker: docker buildx for IMAGE_PLATFORMS into bin/image-buildx/ (OCI layout; needs buildx).
	docker buildx build --build-arg VERSION=$(VERSION) --platform $(subst $(space),$(comma),$(IMAGE_PLATFORMS)) \
	  --output type=oci,dest=$(LOCALBIN)/image-buildx,tar=false -t $(IMG) .

.PHONY: node-packages
node-packages: ## containerd, runc, CNI plugins and iptables from Debian, when missing (root).
	./hack/node-packages.sh

.PHONY: node-binaries
node-binaries: ## kubelet, kube-scheduler, kube-proxy into bin/k8s/<version>, beside the control plane's four.
	./hack/node-binaries.sh >/dev/null

# The node count of make run-node and of the node tests that take one (1: what runs fastest; the
# interruption matrix always runs two).
NODES ?=

.PHONY: test-node
test-node: node-packages build node-binaries pushgateway helm prometheus ## E2e on real nodes: the chart's pods, the upstream Pushgateway, the kubelet running the hook, two nodes with Prometheus (delete, both specs) (root).
	PGL_REQUIRE_NODE=1 go test -count=1 -timeout 10m -v ./pkg/ociimage/...
	PGL_REQUIRE_NODE=1 PGL_NODES=$(NODES) go -C test test -count=1 -p 1 -timeout 40m -v ./node/...

.PHONY: run-node
run-node: node-packages build node-binaries pushgateway helm ## `make run` with a real node: the chart installed, pods run (root; Ctrl-C stops all and checks the host).
	go -C test build -o $(LOCALBIN)/local-node ./harness/cmd/run-node
	PGL_NODES=$(NODES) $(LOCALBIN)/local-node

##@ Kubernetes versions

# The releases `make test-versions` proves: the latest patch of every supported minor that the Go
# module proxy serves (docs/versions.md), oldest to newest. Each cold release builds for 4-30 min
# on 2 cores; name a subset (TEST_VERSIONS="v1.30.14 v1.37.2") for a quicker run.
TEST_VERSIONS ?= v1.30.14 v1.31.14 v1.32.13 v1.33.13 v1.34.4 v1.35.4 v1.36.3 v1.37.2

.PHONY: test-versions
test-versions: build helm ## e2e, chart dry-run and sleep-action tests against every Kubernetes release in TEST_VERSIONS (binaries built once each).
	KUBECTL_VERSION=$(KUBE_VERSION) ./hack/test-versions.sh $(TEST_VERSIONS)

.PHONY: proof-fail-closed
proof-fail-closed: node-packages build node-binaries pushgateway ## webhook.failurePolicy=Fail on the real node (root): refusals and recovery with one replica SIGKILLed and with none (docs/reliability.md).
	PGL_REQUIRE_NODE=1 go -C test test -count=1 -p 1 -timeout 25m -v -run TestNodeFailClosed ./node/ -args -fail-closed

.PHONY: prometheus
prometheus: ## The real Prometheus into bin/prometheus/<module version> (built from the Go module proxy, 8-19 min on 2 cores the first time).
	@./hack/prometheus.sh >/dev/null

.PHONY: proof-interruptions
proof-interruptions: node-packages build node-binaries pushgateway helm prometheus ## Every interruption (rollout, delete, eviction, drain, scale to 0, RollingUpdate, crash, no persistence) x both specs on two nodes, judged by Prometheus (root): writes docs/interruptions.md and docs/interruptions/.
	PGL_REQUIRE_NODE=1 go -C test test -count=1 -p 1 -timeout 50m -v -run TestInterruptions ./node/ -args -interruptions

.PHONY: proof-node
proof-node: node-packages build node-binaries pushgateway ## The termination proof's three arms on the real node (root): writes docs/why-node.md and docs/proof-node/.
	@command -v busybox >/dev/null || apt-get install -y busybox-static
	PGL_REQUIRE_NODE=1 go -C test test -count=1 -p 1 -timeout 20m -v -run TestProofNode ./node/ -args -proof
