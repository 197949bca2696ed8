# Release image: imgbuild and a runc with the 2024/2025 escape fixes, nothing
# else. Build context is the repo root after `make build runc` (which put
# bin/imgbuild, bin/runc, bin/ca-certificates.crt and bin/busybox there);
# .dockerignore sends only those and hack/image. FROM scratch, so it builds
# offline:
#
#   make build runc
#   bin/imgbuild build -t REGISTRY/imgbuild:dev --push .
#   bin/imgbuild build --target debug -t REGISTRY/imgbuild:debug --push .
#
# It is also a drop-in for kaniko's image: /kaniko/executor runs
# `imgbuild executor`, the default context is /workspace and credentials are
# read from /kaniko/.docker, as in kaniko's deploy/Dockerfile.
#
# Everything of imgbuild's is under /kaniko, as kaniko keeps its own: the
# in-place executor (the default pod) makes / hold each RUN step's root
# filesystem and leaves /kaniko alone; /kaniko/.imgbuild-container tells it
# that this root filesystem is made for the build.
FROM scratch AS release

COPY bin/ca-certificates.crt /kaniko/ssl/certs/ca-certificates.crt
COPY bin/runc /kaniko/runc
COPY bin/imgbuild /kaniko/imgbuild
# /kaniko/executor (a symlink to imgbuild), /kaniko/.docker, the marker,
# /workspace.
COPY hack/image/ /

ENV PATH=/kaniko \
    SSL_CERT_FILE=/kaniko/ssl/certs/ca-certificates.crt \
    DOCKER_CONFIG=/kaniko/.docker/ \
    IMGBUILD_ROOT=/var/lib/imgbuild
WORKDIR /workspace
ENTRYPOINT ["/kaniko/imgbuild"]

# The debug image, kaniko's :debug: the release image plus a shell, for CI
# jobs whose script runs in the image (GitLab's). The shell is Debian's
# static busybox (package busybox-static; make build copies it), in
# /kaniko/busybox with its applets: under /kaniko, the in-place executor
# leaves it alone, so the job's shell and tools still work after a build
# that rewrote /. /busybox and /bin/sh point there, as in kaniko's image.
FROM release AS debug
COPY bin/busybox /kaniko/busybox/busybox
ENV PATH=/kaniko:/kaniko/busybox:/busybox
RUN ["/kaniko/busybox/busybox", "--install", "-s", "/kaniko/busybox"]
RUN ["/kaniko/busybox/mkdir", "-p", "/bin"]
RUN ["/kaniko/busybox/ln", "-s", "/kaniko/busybox/sh", "/bin/sh"]
RUN ["/kaniko/busybox/ln", "-s", "/kaniko/busybox", "/busybox"]

# The default target is the release image.
FROM release
