#!/usr/bin/env bash
# Builds the benchmark's competitors into bin/bench (git-ignored, kept between
# runs): buildkitd and buildctl at the BuildKit version in our go.mod, kaniko's
# executor at KANIKO_VERSION, and crane at the go-containerregistry version in
# our go.mod, all from the Go module proxy, and the bench's own helpers
# benchtool and imgtool. buildah comes from Debian (apt-get install buildah).
#
# `go install github.com/moby/buildkit/cmd/buildkitd@vX` is refused because
# BuildKit's go.mod has exclude directives, so the module source is copied to
# a writable temp dir and built there as the main module.
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${PROJECT_ROOT}"

GO="${GO:-go}"
out="${PROJECT_ROOT}/bin/bench"
mkdir -p "${out}"
# BENCH_ANCHORS (bench.sh): only what the chosen comparisons run.
anchors=" ${BENCH_ANCHORS:-host kaniko} "
anchors="${anchors//,/ }"

modversion() { "${GO}" list -m -f '{{.Version}}' "$1"; }

bk_version="$(modversion github.com/moby/buildkit)"
ggcr_version="$(modversion github.com/google/go-containerregistry)"

tmp=""
cleanup() { [[ -z "${tmp}" ]] || chmod -R u+w "${tmp}" 2>/dev/null; [[ -z "${tmp}" ]] || rm -rf "${tmp}"; }
trap cleanup EXIT

stamp="${out}/.buildkit-${bk_version}"
if [[ "${anchors}" == *" host "* ]] && [[ ! -x "${out}/buildkitd" || ! -x "${out}/buildctl" || ! -e "${stamp}" ]]; then
	echo "bench: building buildkitd and buildctl ${bk_version} from the module proxy" >&2
	dir="$("${GO}" mod download -json "github.com/moby/buildkit@${bk_version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	tmp="$(mktemp -d -t imgbuild-bench-bk.XXXXXX)"
	cp -r "${dir}/." "${tmp}/buildkit"
	chmod -R u+w "${tmp}/buildkit"
	(
		cd "${tmp}/buildkit"
		export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
		ldflags="-X github.com/moby/buildkit/version.Version=${bk_version}"
		"${GO}" build -trimpath -tags "osusergo netgo static_build seccomp" -ldflags "${ldflags}" -o "${out}/buildkitd" ./cmd/buildkitd
		"${GO}" build -trimpath -tags "osusergo netgo static_build seccomp" -ldflags "${ldflags}" -o "${out}/buildctl" ./cmd/buildctl
	)
	rm -f "${out}"/.buildkit-*
	touch "${stamp}"
fi

# kaniko is archived (June 2025); v1.24.0 is its last release. Its go.mod
# has no exclude or replace directives, but it is built the same way as
# buildkitd, as the main module of a writable copy, with its own go.sum
# versions (-mod=mod fills what its go.sum lacks) and no workspace. It
# builds with go1.26 as is. Static and stripped, as kaniko's Makefile
# builds out/executor.
kaniko_version="${KANIKO_VERSION:-v1.24.0}"
stamp="${out}/.kaniko-${kaniko_version}"
if [[ "${anchors}" == *" kaniko "* ]] && [[ ! -x "${out}/kaniko-executor" || ! -e "${stamp}" ]]; then
	echo "bench: building kaniko's executor ${kaniko_version} from the module proxy" >&2
	dir="$(GOWORK=off "${GO}" mod download -json "github.com/GoogleContainerTools/kaniko@${kaniko_version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -n "${tmp}" ]] || tmp="$(mktemp -d -t imgbuild-bench-bk.XXXXXX)"
	cp -r "${dir}/." "${tmp}/kaniko"
	chmod -R u+w "${tmp}/kaniko"
	(
		cd "${tmp}/kaniko"
		export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
		"${GO}" build -trimpath -ldflags "-s -w -X github.com/GoogleContainerTools/kaniko/pkg/version.version=${kaniko_version}" \
			-o "${out}/kaniko-executor" ./cmd/executor
	)
	rm -f "${out}"/.kaniko-*
	touch "${stamp}"
fi

stamp="${out}/.crane-${ggcr_version}"
if [[ ! -x "${out}/crane" || ! -e "${stamp}" ]]; then
	echo "bench: building crane ${ggcr_version}" >&2
	# Built from our own module graph, so it is the exact ggcr imgbuild links.
	CGO_ENABLED=0 "${GO}" build -trimpath -o "${out}/crane" github.com/google/go-containerregistry/cmd/crane
	rm -f "${out}"/.crane-*
	touch "${stamp}"
fi

# The benchmark's own helpers: benchtool (measure, counting proxy) and
# imgtool (pushes the base images). bench.sh runs both by path, so nothing
# has to be on PATH in a fresh clone.
CGO_ENABLED=0 "${GO}" build -trimpath -o "${out}/benchtool" ./hack/bench/benchtool
CGO_ENABLED=0 "${GO}" build -trimpath -o "${out}/imgtool" ./hack/imgtool

if [[ "${anchors}" == *" host "* ]] && ! command -v buildah >/dev/null; then
	echo "bench: installing buildah from Debian" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >&2
fi
