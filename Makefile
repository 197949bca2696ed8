# imgbuild developer entry points. The logic lives in hack/; `make help` lists
# the targets.

GO ?= go
BIN := $(CURDIR)/bin
# Release binaries are static (CGO off) so they run in the scratch image.
GO_BUILD_FLAGS ?= -trimpath
# `imgbuild version` reports the commit it was built from.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
TEST_TIMEOUT ?= 20m
# How long each go test -fuzz target runs: `make fuzz` and, shorter, `make test`.
FUZZTIME ?= 10s
TEST_FUZZTIME ?= 3s
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
# Static (package busybox-static), for the image's debug target.
BUSYBOX ?= /bin/busybox
# Every go command here builds against BuildKit with imgbuild's two patches
# (third_party/buildkit/README.md), through the workspace hack/buildkit-src.sh
# writes. A go command run by hand without it builds unpatched BuildKit, in
# which only --executor inplace refuses to run.
export GOWORK := $(BIN)/go.work

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install missing Debian packages (libseccomp-dev, busybox-static, docker-registry, ...)
	@hack/install-deps.sh

.PHONY: buildkit-src
buildkit-src:
	@GO=$(GO) hack/buildkit-src.sh

.PHONY: build
build: deps buildkit-src ## Build bin/imgbuild (static, CGO off) and copy the CA bundle and busybox for the image
	CGO_ENABLED=0 $(GO) build $(GO_BUILD_FLAGS) -ldflags "-X github.com/imgbuild/imgbuild/cmd/imgbuild/cmd.version=$(VERSION)" -o $(BIN)/imgbuild ./cmd/imgbuild
	@# The Dockerfile copies these into the scratch image (see .dockerignore):
	@# the CA bundle, and for its debug target Debian's static busybox.
	install -m 0644 $(CA_BUNDLE) $(BIN)/ca-certificates.crt
	install -m 0755 $(BUSYBOX) $(BIN)/busybox

.PHONY: runc
runc: ## Build runc v1.5.2 with seccomp into bin/runc (skipped when already built)
	@hack/install-runc.sh

.PHONY: demo
demo: build runc ## Build and push testdata/demo to a local registry, then show the result
	hack/demo.sh

# CI is inherited from the environment, so CI=true turns skipped
# prerequisites into failures (internal/testutil.Require). bin/ goes first on
# PATH so tests find our runc rather than an older one on the host.
.PHONY: test
test: deps buildkit-src build runc ## Vet and run all tests with -race (set CI=true to fail on missing prerequisites)
	$(GO) vet ./...
	PATH="$(BIN):$$PATH" $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	FUZZTIME=$(TEST_FUZZTIME) FUZZ_PACKAGES=./pkg/kaniko GO=$(GO) hack/fuzz.sh

.PHONY: fuzz
fuzz: buildkit-src ## Fuzz the flag parsers, FUZZTIME (default 10s) per target (hack/fuzz.sh)
	FUZZTIME=$(FUZZTIME) GO=$(GO) hack/fuzz.sh

# Not part of test: it takes tens of minutes and its figures depend on the
# machine. BENCH_RUNS=1 BENCH_WORKLOADS=small make bench is the quick mode;
# BENCH_ANCHORS=kaniko runs only the kaniko comparison in simulated pods.
.PHONY: bench
bench: build runc ## Benchmark imgbuild against buildkitd+buildctl, buildah and kaniko (hack/bench)
	hack/bench/bench.sh

.PHONY: lint
lint: buildkit-src ## gofmt, go vet and golangci-lint (errcheck, errorlint, staticcheck, unused; .golangci.yml), built into bin/ on first use
	@out="$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*' -not -path './third_party/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@hack/install-lint.sh
	$(BIN)/golangci-lint run ./...

# Where make install puts imgbuild: PREFIX/lib/imgbuild holds imgbuild and
# its runc side by side (imgbuild runs the runc next to itself), and
# PREFIX/bin/imgbuild links to it, so the runc on PATH stays the system's.
PREFIX ?= /usr/local
DESTDIR ?=
.PHONY: install
install: build runc ## Install imgbuild and its pinned runc under PREFIX (default /usr/local; DESTDIR for staging)
	install -D -m 0755 $(BIN)/imgbuild $(DESTDIR)$(PREFIX)/lib/imgbuild/imgbuild
	install -D -m 0755 $(BIN)/runc $(DESTDIR)$(PREFIX)/lib/imgbuild/runc
	install -d $(DESTDIR)$(PREFIX)/bin
	ln -sfn ../lib/imgbuild/imgbuild $(DESTDIR)$(PREFIX)/bin/imgbuild

# The release archive of this machine's architecture: imgbuild, its runc,
# README and LICENSE, and SHA256SUMS beside it. runc needs cgo and
# libseccomp for its target, so an archive is made on a machine of that
# architecture (a CI runner per architecture).
DIST := $(CURDIR)/dist
GOARCH_HOST := $(shell $(GO) env GOARCH)
.PHONY: dist
dist: build runc ## Write dist/imgbuild-VERSION-linux-ARCH.tar.gz and dist/SHA256SUMS
	rm -rf $(DIST)/stage && mkdir -p $(DIST)/stage/imgbuild
	install -m 0755 $(BIN)/imgbuild $(BIN)/runc $(DIST)/stage/imgbuild/
	install -m 0644 README.md $(DIST)/stage/imgbuild/
	if [ -f LICENSE ]; then install -m 0644 LICENSE $(DIST)/stage/imgbuild/; fi
	tar -C $(DIST)/stage --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -czf $(DIST)/imgbuild-$(VERSION)-linux-$(GOARCH_HOST).tar.gz imgbuild
	rm -rf $(DIST)/stage
	cd $(DIST) && sha256sum imgbuild-*.tar.gz > SHA256SUMS

.PHONY: clean
clean: ## Remove bin/ and dist/
	rm -rf $(BIN) $(DIST)
