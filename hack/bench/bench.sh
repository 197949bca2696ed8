#!/usr/bin/env bash
# Benchmarks imgbuild against buildkitd+buildctl (daemonless, as
# buildctl-daemonless.sh runs them, and against an already running daemon)
# and buildah, on the same workloads, one tool after another, never in
# parallel. Run through `make bench`, which builds bin/imgbuild and bin/runc.
#
# Environment:
#   BENCH_RUNS       runs per cell; each figure is the median (default 3)
#   BENCH_WORKLOADS  subset of "small multistage files20k big300 debian"
#   BENCH_TOOLS      subset of "imgbuild bk-daemonless bk-daemon buildah"
#   BENCH_ANCHORS    subset of "host kaniko" (default both): host runs the
#                    tools above on the host; kaniko runs imgbuild's release
#                    image and kaniko v1.24.0 in simulated default pods
#                    (hack/k8s/job-default-pod.yaml), on BENCH_WORKLOADS but
#                    debian (see pod_workloads)
#   BENCH_DIR        scratch dir (default: a new dir under /var/tmp, removed at the end)
#   BENCH_RESULTS    where raw.tsv and report.md go (default bin/bench/results)
#
# Quick mode for development: BENCH_RUNS=1 BENCH_WORKLOADS=small make bench
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="${PROJECT_ROOT}/hack/bench/bench.sh"
BB="${PROJECT_ROOT}/bin/bench"
# BENCH_BIN (set by the driver) holds the copies of imgbuild and runc in use.
export PATH="${BENCH_BIN:+${BENCH_BIN}:}${PROJECT_ROOT}/bin:${BB}:${PATH}"

# --- one measured invocation (re-entered through benchtool measure) --------

# wait_sock waits until buildkitd answers on $1.
wait_sock() {
	for _ in $(seq 1 300); do
		if buildctl --addr "unix://$1" debug workers >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.05
	done
	echo "bench: buildkitd on $1 did not come up" >&2
	return 1
}

buildctl_build() { # ADDR CTX REF
	buildctl --addr "unix://$1" build --progress plain \
		--frontend dockerfile.v0 --local context="$2" --local dockerfile="$2" \
		--output "type=image,name=$3,push=true,registry.insecure=true"
}

# start_buildkitd DIR CONFIG: starts a daemon with its state, socket, log and
# pid file in DIR, and waits until it answers.
start_buildkitd() {
	mkdir -p "$1"
	buildkitd --root "$1/root" --addr "unix://$1/buildkitd.sock" --config "$2" \
		--oci-worker-snapshotter overlayfs >"$1/buildkitd.log" 2>&1 &
	echo $! >"$1/buildkitd.pid"
	wait_sock "$1/buildkitd.sock"
}

stop_buildkitd() { # DIR
	local pid
	pid="$(cat "$1/buildkitd.pid" 2>/dev/null || true)"
	if [[ -n "${pid}" ]]; then
		kill "${pid}" 2>/dev/null || true
		# It is our child only when started in this shell; poll otherwise.
		wait "${pid}" 2>/dev/null || true
		for _ in $(seq 1 200); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.05; done
		rm -f "$1/buildkitd.pid"
	fi
}

run_one() { # TOOL CTX REF STATE
	local tool="$1" ctx="$2" ref="$3" state="$4"
	case "${tool}" in
	imgbuild)
		imgbuild build --root "${state}/imgbuild" --progress plain -t "${ref}" --push "${ctx}"
		;;
	bk-daemonless)
		# What buildctl-daemonless.sh does: a daemon for this one build.
		trap "stop_buildkitd '${state}/bkd'" EXIT
		start_buildkitd "${state}/bkd" "${BENCH_BK_CONFIG}"
		buildctl_build "${state}/bkd/buildkitd.sock" "${ctx}" "${ref}"
		;;
	bk-daemon)
		buildctl_build "${state}/bk-daemon/buildkitd.sock" "${ctx}" "${ref}"
		;;
	buildah)
		local b=(buildah --root "${state}/buildah/root" --runroot "${state}/buildah/run" --storage-driver overlay)
		"${b[@]}" bud --isolation chroot --layers --tls-verify=false -q -t "${ref}" "${ctx}"
		"${b[@]}" push --tls-verify=false "${ref}" "docker://${ref}"
		;;
	crane)
		crane push --insecure "${ctx}" "${ref}"
		;;
	*)
		echo "bench: unknown tool ${tool}" >&2
		return 2
		;;
	esac
}

if [[ "${1:-}" == "__run" ]]; then
	shift
	run_one "$@"
	exit
fi
if [[ "${1:-}" == "__conc" ]]; then
	# __conc TOOL CTX REFPREFIX STATE: 8 builds at once.
	shift
	pids=()
	for i in $(seq 1 8); do
		st="$4"
		# Each daemonless buildkitd gets its own state, as
		# buildctl-daemonless.sh runs them; imgbuild builds share one
		# --root (the first serves the others), buildah shares one storage
		# (it locks), buildctl shares the running daemon.
		case "$1" in bk-daemonless) st="$4/c${i}" ;; esac
		mkdir -p "${st}"
		"${SELF}" __run "$1" "$2" "$3-${i}:latest" "${st}" >"${BENCH_CONC_LOG:-$4/conc}-${i}.log" 2>&1 &
		pids+=($!)
	done
	rc=0
	for p in "${pids[@]}"; do wait "${p}" || rc=1; done
	exit "${rc}"
fi

# --- the driver -------------------------------------------------------------

RUNS="${BENCH_RUNS:-3}"
WORKLOADS="${BENCH_WORKLOADS:-small multistage files20k big300 debian}"
WORKLOADS="${WORKLOADS//,/ }"
TOOLS="${BENCH_TOOLS:-imgbuild bk-daemonless bk-daemon buildah}"
TOOLS="${TOOLS//,/ }"
ANCHORS="${BENCH_ANCHORS:-host kaniko}"
ANCHORS="${ANCHORS//,/ }"
RESULTS="${BENCH_RESULTS:-${BB}/results}"

for bin in "${PROJECT_ROOT}/bin/imgbuild" "${PROJECT_ROOT}/bin/runc"; do
	if [[ ! -x "${bin}" ]]; then
		echo "bench: ${bin} is missing; run 'make bench' (or 'make build runc')" >&2
		exit 1
	fi
done
"${PROJECT_ROOT}/hack/bench/build-tools.sh"
if [[ " ${WORKLOADS} " == *" debian "* ]]; then
	"${PROJECT_ROOT}/hack/bench/debian-rootfs.sh"
fi

own_dir=""
if [[ -z "${BENCH_DIR:-}" ]]; then
	BENCH_DIR="$(mktemp -d /var/tmp/imgbuild-bench.XXXXXX)"
	own_dir="${BENCH_DIR}"
fi
mkdir -p "${BENCH_DIR}" "${RESULTS}"
# Measure a copy, so a `make build` elsewhere in the tree during the run does
# not swap the binary under us.
export BENCH_BIN="${BENCH_DIR}/bin"
mkdir -p "${BENCH_BIN}"
cp "${PROJECT_ROOT}/bin/imgbuild" "${PROJECT_ROOT}/bin/runc" "${BENCH_BIN}/"
export PATH="${BENCH_BIN}:${PATH}"
registry_pid=""
proxy_pid=""

# umount_under DIR: lazily unmounts everything mounted below DIR, deepest first
# (buildah's overlay storage, a killed daemon's snapshots).
umount_under() {
	local d
	d="$(realpath -m "$1")"
	awk -v d="${d}/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "${m}" 2>/dev/null || true
	done
}

wipe() { # DIR
	umount_under "$1"
	rm -rf "$1"
}

cleanup() {
	set +o errexit
	for d in "${BENCH_DIR}"/state/*/bk-daemon "${BENCH_DIR}"/state/*/bkd "${BENCH_DIR}"/state/*/c*/bkd; do
		[[ -d "${d}" ]] && stop_buildkitd "${d}"
	done
	[[ -n "${proxy_pid}" ]] && kill "${proxy_pid}" 2>/dev/null && wait "${proxy_pid}" 2>/dev/null
	[[ -n "${registry_pid}" ]] && kill "${registry_pid}" 2>/dev/null && wait "${registry_pid}" 2>/dev/null
	umount_under "${BENCH_DIR}"
	[[ -n "${own_dir}" ]] && rm -rf "${own_dir}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_http() { # URL PID LOG
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: $1 did not come up; log:" >&2
	cat "$3" >&2
	return 1
}

# A real registry (distribution 2.8, Debian's docker-registry) on loopback,
# behind a proxy that counts uploaded bytes. Every tool talks to the proxy.
rport="$(free_port)"
mkdir -p "${BENCH_DIR}/registry"
cat >"${BENCH_DIR}/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${BENCH_DIR}/registry/data
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${rport}
  secret: imgbuild-bench
EOF
docker-registry serve "${BENCH_DIR}/registry/config.yml" >"${BENCH_DIR}/registry/log" 2>&1 &
registry_pid=$!
wait_http "http://127.0.0.1:${rport}/v2/" "${registry_pid}" "${BENCH_DIR}/registry/log"
pport="$(free_port)"
"${BB}/benchtool" proxy --listen "127.0.0.1:${pport}" --upstream "http://127.0.0.1:${rport}" >"${BENCH_DIR}/proxy.log" 2>&1 &
proxy_pid=$!
wait_http "http://127.0.0.1:${pport}/v2/" "${proxy_pid}" "${BENCH_DIR}/proxy.log"
REG="127.0.0.1:${pport}"
uploaded() { curl -fsS "http://${REG}/_bench/bytes"; }

export BENCH_BK_CONFIG="${BENCH_DIR}/buildkitd.toml"
cat >"${BENCH_BK_CONFIG}" <<EOF
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
[worker.containerd]
  enabled = false
[registry."${REG}"]
  http = true
  insecure = true
EOF

echo "bench: pushing base images to ${REG}" >&2
"${BB}/imgtool" push-busybox "${REG}/base/busybox:latest" >&2
if [[ " ${WORKLOADS} " == *" debian "* ]]; then
	"${BB}/imgtool" push-rootfs "${BB}/bookworm-minbase.tar" "${REG}/base/debian:bookworm" >&2
fi
WL="${BENCH_DIR}/workloads"
"${PROJECT_ROOT}/hack/bench/workloads.sh" "${WL}" "${REG}/base/busybox:latest" "${REG}/base/debian:bookworm"

changed_file() {
	case "$1" in
	small) echo main.sh ;; multistage) echo VERSION ;; debian) echo app.sh ;; *) echo stamp.txt ;;
	esac
}

raw="${RESULTS}/raw.tsv"
: >"${raw}"
mkdir -p "${RESULTS}/logs"
rm -f "${RESULTS}"/logs/*.log

run_measured() { # WL SCENARIO TOOL RUN CTX REF [__conc]
	local wl="$1" sc="$2" tool="$3" run="$4" ctx="$5" ref="$6" mode="${7:-__run}"
	local extra=() log="${RESULTS}/logs/${wl}-${sc}-${tool}-r${run}.log" before after res
	if [[ "${tool}" == bk-daemon ]]; then
		extra=(--pid "$(cat "${state}/bk-daemon/buildkitd.pid")")
	fi
	# Write back what the previous run left dirty, outside the timed region:
	# otherwise the next tool's first sync (an fsync, an overlay unmount)
	# waits for it and is billed for another tool's writes.
	sync
	before="$(uploaded)"
	# __conc writes one log per build next to this one.
	export BENCH_CONC_LOG="${log%.log}"
	res="${BENCH_DIR}/res"
	rm -f "${res}"
	"${BB}/benchtool" measure "${extra[@]}" --out "${res}" -- "${SELF}" "${mode}" "${tool}" "${ctx}" "${ref}" "${state}" >"${log}" 2>&1 || true
	after="$(uploaded)"
	read -r wall rss code <"${res}" || { wall=0 rss=0 code=255; }
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${wl}" "${sc}" "${tool}" "${run}" "${wall}" "${rss}" "$((after - before))" "${code}" >>"${raw}"
	printf 'bench: %-10s %-7s %-14s run %s: %6.2fs %5d MiB %8.1f MB up%s\n' "${wl}" "${sc}" "${tool}" "${run}" "${wall}" "$((rss / 1024))" \
		"$(awk -v b="$((after - before))" 'BEGIN { print b / 1e6 }')" "$([[ "${code}" == 0 ]] || echo " FAILED (exit ${code}, ${log})")" >&2
}

host_workloads=""
[[ " ${ANCHORS} " == *" host "* ]] && host_workloads="${WORKLOADS}"
for wl in ${host_workloads}; do
	ctx="${WL}/${wl}"
	file="$(changed_file "${wl}")"
	cp "${ctx}/${file}" "${BENCH_DIR}/${wl}.orig"
	for run in $(seq 1 "${RUNS}"); do
		state="${BENCH_DIR}/state/${wl}-r${run}"
		mkdir -p "${state}"
		cp "${BENCH_DIR}/${wl}.orig" "${ctx}/${file}"
		if [[ " ${TOOLS} " == *" bk-daemon "* ]]; then
			start_buildkitd "${state}/bk-daemon" "${BENCH_BK_CONFIG}"
		fi
		for sc in cold warm change; do
			if [[ "${sc}" == change ]]; then
				printf '# changed in run %s\n' "${run}" >>"${ctx}/${file}"
			fi
			for tool in ${TOOLS}; do
				run_measured "${wl}" "${sc}" "${tool}" "${run}" "${ctx}" "${REG}/bench/${wl}-${tool}-r${run}:latest"
			done
		done
		if [[ "${wl}" == big300 && " ${TOOLS} " == *" imgbuild "* ]]; then
			# Push throughput: imgbuild with a warm cache into a new repository
			# (cache hit, export, push) against crane pushing the same blobs
			# from an OCI layout that imgbuild wrote.
			imgbuild build --root "${state}/imgbuild" --progress quiet -o "type=oci,tar=false,dest=${state}/layout" "${ctx}" >/dev/null 2>&1
			run_measured "${wl}" push imgbuild "${run}" "${ctx}" "${REG}/bench/push-imgbuild-r${run}:latest"
			run_measured "${wl}" push crane "${run}" "${state}/layout" "${REG}/bench/push-crane-r${run}:latest"
		fi
		if [[ " ${TOOLS} " == *" bk-daemon "* ]]; then
			stop_buildkitd "${state}/bk-daemon"
		fi
		if [[ "${wl}" == small ]]; then
			# 8 concurrent cold builds.
			for tool in ${TOOLS}; do
				state="${BENCH_DIR}/state/${wl}-conc-r${run}-${tool}"
				mkdir -p "${state}"
				[[ "${tool}" == bk-daemon ]] && start_buildkitd "${state}/bk-daemon" "${BENCH_BK_CONFIG}"
				run_measured "${wl}" conc8 "${tool}" "${run}" "${ctx}" "${REG}/bench/${wl}-conc-${tool}-r${run}" __conc
				[[ "${tool}" == bk-daemon ]] && stop_buildkitd "${state}/bk-daemon"
				wipe "${state}"
			done
		fi
		wipe "${BENCH_DIR}/state/${wl}-r${run}"
	done
	cp "${BENCH_DIR}/${wl}.orig" "${ctx}/${file}"
done

# --- kaniko, in the default pod ---------------------------------------------
#
# Each cell is a fresh pod (a new runc bundle from job-default-pod.yaml: uid
# 0, containerd's default capabilities, Docker's default seccomp profile,
# masked /proc, emptyDir volumes) with an empty state, made untimed; the
# timed region is `runc run` to the pod's end. Both builders get the same
# kaniko command line. pod-cold: no cache; pod-fill: --cache=true into an
# empty cache repository; pod-cached: a new pod, the same cache and
# destination, the Dockerfile unchanged.

# pod_workloads: the debian workload's apt-get needs DNS, and the simulated
# pod's resolv.conf names the cluster DNS (10.96.0.10), which is not here.
pod_workloads() {
	local w out=""
	for w in ${WORKLOADS}; do
		[[ "${w}" == debian ]] || out="${out} ${w}"
	done
	echo "${out}"
}

# make_pod TOOL BUNDLE CTX REF [CACHE_REPO]: the pod's bundle, untimed.
make_pod() {
	local tool="$1" bundle="$2" ctx="$3" ref="$4" cache="${5:-}"
	local argv=(/kaniko/executor --context=dir:///workspace --dockerfile=Dockerfile "--destination=${ref}"
		--insecure --insecure-pull --force)
	[[ -z "${cache}" ]] || argv+=(--cache=true "--cache-repo=${cache}")
	local src=()
	case "${tool}" in
	imgbuild) src=(--layout "${BENCH_DIR}/release-layout") ;;
	# kaniko's deploy/Dockerfile, kaniko-executor stage.
	kaniko) src=(--rootfs "${BENCH_DIR}/kaniko-root" --workdir /workspace
		--env HOME=/root --env USER=root --env PATH=/usr/local/bin:/kaniko --env SSL_CERT_DIR=/kaniko/ssl/certs
		--env DOCKER_CONFIG=/kaniko/.docker/ --env DOCKER_CREDENTIAL_GCR_CONFIG=/kaniko/.config/gcloud/docker_credential_gcr_config.json) ;;
	esac
	"${BB}/benchtool" pod create --manifest "${PROJECT_ROOT}/hack/k8s/job-default-pod.yaml" --dir "${bundle}" "${src[@]}" \
		--secret 'registry-credentials/.dockerconfigjson={"auths":{}}' --workspace "${ctx}" -- "${argv[@]}"
}

run_pod_measured() { # WL SCENARIO TOOL RUN BUNDLE
	local wl="$1" sc="$2" tool="$3" run="$4" bundle="$5"
	local log="${RESULTS}/logs/${wl}-${sc}-${tool}-r${run}.log" before after res
	sync
	before="$(uploaded)"
	res="${BENCH_DIR}/res"
	rm -f "${res}"
	"${BB}/benchtool" measure --out "${res}" -- "${BB}/benchtool" pod run --runc "${BENCH_BIN}/runc" "${bundle}" >"${log}" 2>&1 || true
	after="$(uploaded)"
	read -r wall rss code <"${res}" || { wall=0 rss=0 code=255; }
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${wl}" "${sc}" "${tool}" "${run}" "${wall}" "${rss}" "$((after - before))" "${code}" >>"${raw}"
	printf 'bench: %-10s %-10s %-9s run %s: %6.2fs %5d MiB %8.1f MB up%s\n' "${wl}" "${sc}" "${tool}" "${run}" "${wall}" "$((rss / 1024))" \
		"$(awk -v b="$((after - before))" 'BEGIN { print b / 1e6 }')" "$([[ "${code}" == 0 ]] || echo " FAILED (exit ${code}, ${log})")" >&2
}

if [[ " ${ANCHORS} " == *" kaniko "* ]]; then
	echo "bench: the release image and a kaniko root for the pods" >&2
	# The release image as TestImageInPods builds it: the repo's Dockerfile
	# over bin/imgbuild (this run's copy), bin/runc and the CA bundle.
	rel="${BENCH_DIR}/release-ctx"
	mkdir -p "${rel}/bin" "${rel}/hack"
	cp "${PROJECT_ROOT}/Dockerfile" "${PROJECT_ROOT}/.dockerignore" "${rel}/"
	cp "${BENCH_BIN}/imgbuild" "${BENCH_BIN}/runc" "${PROJECT_ROOT}/bin/ca-certificates.crt" "${rel}/bin/"
	cp -a "${PROJECT_ROOT}/hack/image" "${rel}/hack/"
	imgbuild build --root "${BENCH_DIR}/release-root" --progress quiet \
		-o "type=oci,tar=false,dest=${BENCH_DIR}/release-layout" "${rel}" >/dev/null
	wipe "${BENCH_DIR}/release-root"
	# kaniko's deploy/Dockerfile (kaniko-executor stage) without the cloud
	# credential helpers, which a push to a plain registry does not run.
	kr="${BENCH_DIR}/kaniko-root"
	mkdir -p "${kr}/kaniko/ssl/certs" "${kr}/kaniko/.docker" "${kr}/etc" "${kr}/workspace"
	chmod 0777 "${kr}/kaniko"
	cp "${BB}/kaniko-executor" "${kr}/kaniko/executor"
	cp "${PROJECT_ROOT}/bin/ca-certificates.crt" "${kr}/kaniko/ssl/certs/ca-certificates.crt"
	kdir="$(GOWORK=off go mod download -json "github.com/GoogleContainerTools/kaniko@${KANIKO_VERSION:-v1.24.0}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	cp "${kdir}/files/nsswitch.conf" "${kr}/etc/nsswitch.conf"
	chmod 0644 "${kr}/etc/nsswitch.conf"
fi
pod_wls=""
[[ " ${ANCHORS} " == *" kaniko "* ]] && pod_wls="$(pod_workloads)"
for wl in ${pod_wls}; do
	ctx="${WL}/${wl}"
	for run in $(seq 1 "${RUNS}"); do
		pods="${BENCH_DIR}/pods/${wl}-r${run}"
		mkdir -p "${pods}"
		for sc in pod-cold pod-fill pod-cached; do
			for tool in imgbuild kaniko; do
				ref="${REG}/bench/pod-${wl}-${tool}-r${run}:latest"
				cache=""
				case "${sc}" in
				pod-fill | pod-cached)
					ref="${REG}/bench/podc-${wl}-${tool}-r${run}:latest"
					cache="${REG}/cache/${wl}-${tool}-r${run}"
					;;
				esac
				make_pod "${tool}" "${pods}/${sc}-${tool}" "${ctx}" "${ref}" "${cache}"
				run_pod_measured "${wl}" "${sc}" "${tool}" "${run}" "${pods}/${sc}-${tool}"
				wipe "${pods}/${sc}-${tool}"
			done
		done
		wipe "${pods}"
	done
done

{
	echo "## Results $(date -u +%Y-%m-%d)"
	echo
	echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "${PRETTY_NAME}"), kernel $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup | sed 's/tmpfs/v1/; s/cgroup2fs/v2/')"
	echo "- imgbuild $(git -C "${PROJECT_ROOT}" describe --always --dirty) (binary sha256 $(sha256sum "${BENCH_BIN}/imgbuild" | cut -c1-12)), snapshotter auto (overlayfs here); runc: $(runc --version | head -1)"
	if [[ " ${ANCHORS} " == *" host "* ]]; then
		echo "- $(buildkitd --version | cut -d' ' -f2-) (buildkitd and buildctl built from the module proxy), oci worker, overlayfs snapshotter, same runc"
		echo "- $(buildah --version) (Debian), --storage-driver overlay, --isolation chroot, --layers"
	fi
	echo "- crane $(crane version) (push throughput only); registry: Debian docker-registry $(dpkg-query -W -f '${Version}' docker-registry) on loopback behind a byte-counting proxy"
	if [[ " ${ANCHORS} " == *" kaniko "* ]]; then
		echo "- kaniko $("${BB}/kaniko-executor" version 2>/dev/null | head -1) (executor built from the module proxy) and imgbuild's release image, each in a fresh simulated pod of hack/k8s/job-default-pod.yaml (runc, Docker's default seccomp); pod workloads:$(pod_workloads)"
	fi
	echo "- runs per cell: ${RUNS}; workloads: ${WORKLOADS}; anchors: ${ANCHORS}"
	echo
	"${BB}/benchtool" report "${raw}"
} | tee "${RESULTS}/report.md"
