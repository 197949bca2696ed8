#!/usr/bin/env bash
# Writes the benchmark's build contexts into OUTDIR, deterministically (same
# files, same bytes, every time).
#
#   workloads.sh OUTDIR BUSYBOX_REF DEBIAN_REF
#
# Each context has a file that only the last layer depends on (the
# "one-file change" scenario rewrites it): small/main.sh, multistage/VERSION,
# files20k/stamp.txt, big300/stamp.txt, debian/app.sh.
set -o errexit -o nounset -o pipefail

if [[ $# -ne 3 ]]; then
	echo "usage: $0 OUTDIR BUSYBOX_REF DEBIAN_REF" >&2
	exit 2
fi
out="$1"
busybox="$2"
debian="$3"
mkdir -p "${out}"

# small: COPY + a few RUN + metadata.
d="${out}/small"
rm -rf "${d}"
mkdir -p "${d}/lib"
for i in $(seq 1 20); do
	printf 'lib %d\n%s\n' "${i}" "$(printf 'x%.0s' $(seq 1 200))" >"${d}/lib/mod${i}.txt"
done
printf '#!/bin/sh\necho "hello from the small app"\n' >"${d}/main.sh"
cat >"${d}/Dockerfile" <<DF
FROM ${busybox}
LABEL org.opencontainers.image.title="bench-small" org.opencontainers.image.version="1.0"
WORKDIR /app
COPY lib/ /app/lib/
RUN mkdir -p /app/data && cat /app/lib/*.txt | sha256sum > /app/data/lib.sum
RUN i=0; while [ \$i -lt 2000 ]; do echo "line \$i"; i=\$((i+1)); done > /app/data/lines.txt
RUN mkdir -p /etc && echo "app:x:1000:1000::/app:/bin/sh" >> /etc/passwd && chown -R 1000 /app/data
COPY main.sh /app/main.sh
ENV APP_ENV=bench PORT=8080
EXPOSE 8080
USER 1000
ENTRYPOINT ["/bin/sh", "/app/main.sh"]
DF

# multistage: the first stage does real CPU work on the sources (gzip -9 and
# sha256 over each "source file" repeated 400 times, a stand-in for a
# compiler); the final stage copies the artifact.
d="${out}/multistage"
rm -rf "${d}"
mkdir -p "${d}/src"
for i in $(seq 1 8); do
	{
		printf '/* unit %d */\n' "${i}"
		for j in $(seq 1 300); do printf 'int f_%d_%d(int x) { return x * %d + %d; }\n' "${i}" "${j}" "${j}" "${i}"; done
	} >"${d}/src/unit${i}.c"
done
echo "1.0.0" >"${d}/VERSION"
cat >"${d}/Dockerfile" <<DF
FROM ${busybox} AS build
COPY src/ /src/
RUN mkdir -p /out && for f in /src/*.c; do \\
      i=0; while [ \$i -lt 400 ]; do cat "\$f"; i=\$((i+1)); done | gzip -9 | sha256sum; \\
    done > /out/app.bin

FROM ${busybox}
COPY --from=build /out/app.bin /app/app.bin
COPY VERSION /app/VERSION
ENTRYPOINT ["/bin/cat", "/app/app.bin"]
DF

# files20k: 20,000 small files (100 dirs x 200) copied in one step.
d="${out}/files20k"
rm -rf "${d}"
mkdir -p "${d}/files"
for i in $(seq -w 0 99); do
	mkdir "${d}/files/d${i}"
	for j in $(seq -w 0 199); do
		printf 'file %s/%s\n' "${i}" "${j}" >"${d}/files/d${i}/f${j}.txt"
	done
done
echo "stamp 0" >"${d}/stamp.txt"
cat >"${d}/Dockerfile" <<DF
FROM ${busybox}
COPY files/ /data/
COPY stamp.txt /stamp.txt
DF

# big300: one RUN writing 300 MB of incompressible data into one layer.
d="${out}/big300"
rm -rf "${d}"
mkdir -p "${d}"
echo "stamp 0" >"${d}/stamp.txt"
cat >"${d}/Dockerfile" <<DF
FROM ${busybox}
RUN head -c 300000000 /dev/urandom > /big.bin
COPY stamp.txt /stamp.txt
DF

# debian: apt-get install of a few packages on a debootstrap rootfs.
d="${out}/debian"
rm -rf "${d}"
mkdir -p "${d}"
printf '#!/bin/sh\ncurl --version | head -1\njq --version\n' >"${d}/app.sh"
cat >"${d}/Dockerfile" <<DF
FROM ${debian}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl jq ca-certificates && rm -rf /var/lib/apt/lists/*
COPY app.sh /app.sh
CMD ["/bin/sh", "/app.sh"]
DF
