#!/usr/bin/env bash
# Installs the Debian packages imgbuild's build and tests need, skipping
# those already installed so a warm machine does no apt work at all.
#
#   libseccomp-dev pkg-config gcc  build runc with seccomp (hack/install-runc.sh)
#   busybox-static                 base image for tests (internal/testutil)
#   docker-registry                real distribution registry for tests
#   ca-certificates                TLS roots, also copied into the release image
#   git                            go module fetches of VCS-only dependencies; the git
#                                  http-backend that git context tests serve repos with
#   curl                           hack/demo.sh waits on the registry with it
#   uidmap                         newuidmap/newgidmap for rootless builds
#   fuse-overlayfs                 the snapshotter for rootless builds on kernels without userns overlayfs
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${PROJECT_ROOT}"

packages=(libseccomp-dev pkg-config gcc busybox-static docker-registry ca-certificates git curl uidmap fuse-overlayfs)

missing=()
for p in "${packages[@]}"; do
	if [[ "$(dpkg-query -W -f='${db:Status-Status}' "${p}" 2>/dev/null)" != installed ]]; then
		missing+=("${p}")
	fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
	sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
