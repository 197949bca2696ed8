#!/usr/bin/env bash
# Makes a Debian bookworm minbase rootfs tarball with debootstrap, cached in
# bin/bench/bookworm-minbase.tar. Usage: debian-rootfs.sh [MIRROR]
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${PROJECT_ROOT}/bin/bench/bookworm-minbase.tar"
mirror="${1:-http://deb.debian.org/debian}"

if [[ -s "${out}" ]]; then
	exit 0
fi
if ! command -v debootstrap >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
fi
mkdir -p "$(dirname "${out}")"
tmp="$(mktemp -d -t imgbuild-bench-rootfs.XXXXXX)"
cleanup() {
	# debootstrap mounts proc and sys inside the target while it runs.
	for m in proc sys dev/pts dev; do
		mountpoint -q "${tmp}/rootfs/${m}" 2>/dev/null && umount -l "${tmp}/rootfs/${m}"
	done
	rm -rf "${tmp}"
}
trap cleanup EXIT

echo "bench: debootstrap --variant=minbase bookworm from ${mirror}" >&2
debootstrap --variant=minbase bookworm "${tmp}/rootfs" "${mirror}" >"${tmp}/debootstrap.log" 2>&1 || {
	tail -20 "${tmp}/debootstrap.log" >&2
	exit 1
}
rm -rf "${tmp}/rootfs/var/cache/apt/archives/"*.deb "${tmp}/rootfs/var/lib/apt/lists/"*
# Numeric owners, sorted, fixed mtimes: the same rootfs always gives the same layer.
tar --sort=name --numeric-owner --mtime=2025-01-01 -C "${tmp}/rootfs" -cf "${out}.tmp" .
mv "${out}.tmp" "${out}"
echo "bench: wrote ${out} ($(du -h "${out}" | cut -f1))" >&2
