#!/usr/bin/env bash
# Builds testdata/demo with imgbuild against a local registry and shows the
# result. Run through `make demo`, which builds bin/imgbuild and bin/runc.
#
# Environment:
#   DEMO_PORT  registry port on 127.0.0.1 (default 5000)
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${PROJECT_ROOT}"

port="${DEMO_PORT:-5000}"
registry="127.0.0.1:${port}"
imgbuild="${PROJECT_ROOT}/bin/imgbuild"
tmp="$(mktemp -d -t imgbuild-demo.XXXXXX)"
registry_pid=""

cleanup() {
	if [[ -n "${registry_pid}" ]]; then
		kill "${registry_pid}" 2>/dev/null || true
		wait "${registry_pid}" 2>/dev/null || true
	fi
	rm -rf "${tmp}"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*" >&2; }

for bin in "${imgbuild}" "${PROJECT_ROOT}/bin/runc"; do
	if [[ ! -x "${bin}" ]]; then
		echo "demo: ${bin} is missing; run 'make demo' (or 'make build runc')" >&2
		exit 1
	fi
done

step "starting imgbuild registry on ${registry}"
"${imgbuild}" registry serve --addr "${registry}" --root "${tmp}/registry" >"${tmp}/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
	if curl -fsS -o /dev/null "http://${registry}/v2/" 2>/dev/null; then
		break
	fi
	if ! kill -0 "${registry_pid}" 2>/dev/null; then
		echo "demo: registry exited; its log:" >&2
		cat "${tmp}/registry.log" >&2
		exit 1
	fi
	sleep 0.1
done
curl -fsS -o /dev/null "http://${registry}/v2/" || {
	echo "demo: registry on ${registry} not ready after 10s; its log:" >&2
	cat "${tmp}/registry.log" >&2
	exit 1
}

step "pushing the busybox base image"
go run ./hack/imgtool push-busybox "${registry}/busybox:latest"

step "building testdata/demo"
time "${imgbuild}" build \
	--root "${tmp}/state" \
	--progress plain \
	--build-arg "BASE=${registry}/busybox:latest" \
	-t "${registry}/demo:latest" \
	--push \
	testdata/demo

step "the pushed image"
go run ./hack/imgtool show --max-files 12 "${registry}/demo:latest"

step "/app/built.txt and /app/out.txt, written by RUN steps"
go run ./hack/imgtool show "${registry}/demo:latest" --cat /app/built.txt
go run ./hack/imgtool show "${registry}/demo:latest" --cat /app/out.txt

step "done; stopping the registry"
