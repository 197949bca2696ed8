// Package inplace is the executor for a container that may neither create
// namespaces nor mount (the default Kubernetes pod: seccomp RuntimeDefault,
// no CAP_SYS_ADMIN), as kaniko runs: each RUN step runs in the container's
// own root filesystem, made to hold the step's snapshot first, and what the
// step changed is saved back to the snapshot after. /proc, /sys, /dev, mount
// points, /etc/hosts and resolv.conf, and imgbuild's own files stay as the
// container has them, so a step sees a working /proc and /dev.
//
// It works on the native snapshotter's directories with nothing mounted:
// its Applier and Differ replace containerd's, which mount even a plain
// bind, and BuildKit's read-only local mounts and secret tmpfs are avoided
// by the patch in third_party/buildkit (IMGBUILD_NO_MOUNTS).
package inplace
