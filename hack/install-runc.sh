#!/usr/bin/env bash
# Builds runc with seccomp support into bin/runc.
#
# imgbuild refuses runc releases without the 2024/2025 container-escape fixes
# (see pkg/builder/runc.go), and Debian 12 ships runc 1.1.5, so we build our
# own. A static binary is preferred so it can be copied into the scratch
# release image; a dynamic one is the fallback.
#
# Environment:
#   RUNC_VERSION  version to build (default v1.5.2; if the proxy lacks it, the
#                 newest v1.5.x release is used instead)
#   RUNC_STATIC   "0" to skip the static attempt (default 1)
set -o errexit -o nounset -o pipefail
# Builds another module: not the workspace of our patched BuildKit.
export GOWORK=off

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${PROJECT_ROOT}"

want="${RUNC_VERSION:-v1.5.2}"
module=github.com/opencontainers/runc
bin_dir="${PROJECT_ROOT}/bin"
runc="${bin_dir}/runc"

log() { echo "install-runc: $*" >&2; }

# Skip the ~20s build when the binary is already the requested version.
if [[ -x "${runc}" ]] && "${runc}" --version 2>/dev/null | grep -qx "runc version ${want#v}"; then
	exit 0
fi

# Confirm the version is on the proxy; fall back to the newest 1.5.x release.
versions="$(go list -m -versions "${module}")"
if ! tr ' ' '\n' <<<"${versions}" | grep -qx "${want}"; then
	fallback="$(tr ' ' '\n' <<<"${versions}" | grep -E '^v1\.5\.[0-9]+$' | sort -V | tail -n1 || true)"
	if [[ -z "${fallback}" ]]; then
		log "${module}@${want} is not on the module proxy and no v1.5.x release is either"
		exit 1
	fi
	log "${module}@${want} is not on the module proxy; using ${fallback}"
	want="${fallback}"
	if [[ -x "${runc}" ]] && "${runc}" --version 2>/dev/null | grep -qx "runc version ${want#v}"; then
		exit 0
	fi
fi

if ! pkg-config --exists libseccomp; then
	log "libseccomp-dev is missing; run hack/install-deps.sh (make deps)"
	exit 1
fi

mkdir -p "${bin_dir}"
# Build into a scratch GOBIN and move into place, so a failed build never
# leaves a half-written bin/runc behind.
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

build() {
	CGO_ENABLED=1 GOBIN="${tmp}" GOFLAGS=-buildvcs=false go install -trimpath "$@" "${module}@${want}"
}

static=0
if [[ "${RUNC_STATIC:-1}" != 0 ]]; then
	log "building static runc ${want}"
	# netgo/osusergo keep glibc's NSS (which cannot work statically) out.
	if build -tags 'seccomp netgo osusergo urfave_cli_no_docs' -ldflags '-s -w -extldflags -static' 2>"${tmp}/static.log"; then
		static=1
	else
		log "static build failed, falling back to a dynamic build:"
		sed 's/^/  /' "${tmp}/static.log" >&2
	fi
fi
if [[ "${static}" == 0 ]]; then
	log "building dynamic runc ${want}"
	build -tags 'seccomp urfave_cli_no_docs' -ldflags '-s -w'
fi

install -m 0755 "${tmp}/runc" "${runc}"
log "$("${runc}" --version | head -n1) -> ${runc} ($([[ "${static}" == 1 ]] && echo static || echo dynamic))"
