package cmd

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// podIDBase is where the simulated pod's user namespace starts on the host,
// as a kubelet with user namespaces would map it.
const podIDBase = 200000

// podCaps is the capability set a Kubernetes container gets by default (the
// container runtime's default; no CAP_SYS_ADMIN).
var podCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// TestImageRunsAsPod builds imgbuild's own image with imgbuild, then runs it
// under runc the way a Kubernetes pod with `hostUsers: false` runs it: its
// own user namespace (uid 0 inside is uid 200000 outside), the default
// capabilities and no others, /proc unmasked (procMount: Unmasked), no
// privileged mode; the image's imgbuild builds a Dockerfile with RUN steps
// and pushes it to the host's registry.
func TestImageRunsAsPod(t *testing.T) {
	e := setup(t)

	// The image, built from the repo's Dockerfile with this test's binary.
	imgCtx := t.TempDir()
	mustCopy(t, filepath.Join(e.repo, "Dockerfile"), filepath.Join(imgCtx, "Dockerfile"), 0o644)
	mustCopy(t, filepath.Join(e.repo, ".dockerignore"), filepath.Join(imgCtx, ".dockerignore"), 0o644)
	mustCopy(t, binary, filepath.Join(imgCtx, "bin", "imgbuild"), 0o755)
	mustCopy(t, e.runc, filepath.Join(imgCtx, "bin", "runc"), 0o755)
	mustCopy(t, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(imgCtx, "bin", "ca-certificates.crt"), 0o644)
	if _, err := exec.Command("cp", "-a", filepath.Join(e.repo, "hack", "image"), filepath.Join(imgCtx, "hack", "image")).CombinedOutput(); err != nil {
		os.MkdirAll(filepath.Join(imgCtx, "hack"), 0o755)
		if out, err := exec.Command("cp", "-a", filepath.Join(e.repo, "hack", "image"), filepath.Join(imgCtx, "hack")).CombinedOutput(); err != nil {
			t.Fatalf("copying hack/image: %v %s", err, out)
		}
	}
	ociDir := filepath.Join(t.TempDir(), "layout")
	r := imgbuild(t, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "quiet", "-o", "type=oci,tar=false,dest="+ociDir, imgCtx)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	h, err := v1.NewHash(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(h)
	if err != nil {
		t.Fatal(err)
	}

	// The pod's root filesystem: the image, plus the emptyDirs a Job gives
	// it (/tmp, the state dir) and the workspace with a build context.
	// Not t.TempDir: its parent is private to the host's root, and the
	// pod's root (uid 200000) must reach its rootfs.
	bundle, err := os.MkdirTemp("", "imgbuild-pod-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bundle) })
	os.Chmod(bundle, 0o755)
	rootfs := filepath.Join(bundle, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	untarReader(t, mutate.Extract(img), rootfs)
	for _, d := range []string{"tmp", "var/lib/imgbuild", "workspace", "proc", "sys", "dev", "etc"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777)
	os.WriteFile(filepath.Join(rootfs, "etc", "hosts"), []byte("127.0.0.1 localhost\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "workspace", "Dockerfile"), []byte(`ARG BASE
FROM ${BASE}
RUN echo "built in a pod" > /pod.txt && chown 1000:1000 /pod.txt
`), 0o644)
	// Files in the pod belong to its root: uid 200000 on the host.
	if out, err := exec.Command("chown", "-R", "200000:200000", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}

	ref := e.registry + "/e2e/from-pod:v1"
	spec := podSpec(t, e, []string{"/kaniko/executor", "--context", "dir:///workspace", "--destination", ref,
		"--build-arg", "BASE=" + e.base})
	b, _ := json.MarshalIndent(spec, "", "  ")
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)

	var out bytes.Buffer
	run := exec.CommandContext(t.Context(), e.runc, "--root", filepath.Join(bundle, "runc-state"), "run", "--bundle", bundle, "imgbuild-pod-"+filepath.Base(bundle))
	run.Stdout, run.Stderr = &out, &out
	err = run.Run()
	t.Logf("pod output:\n%s", out.String())
	if err != nil {
		t.Fatalf("the pod's build failed: %v", err)
	}
	pushed := pull(t, ref)
	if got := files(t, pushed)["pod.txt"]; got != "built in a pod\n" {
		t.Errorf("pod.txt = %q", got)
	}
}

// podSpec is a runc config for the simulated pod.
func podSpec(t *testing.T, e e2e, args []string) map[string]any {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(e.runc, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	proc["cwd"] = "/workspace"
	proc["env"] = []string{"PATH=/kaniko", "HOME=/root", "DOCKER_CONFIG=/kaniko/.docker/",
		"IMGBUILD_ROOT=/var/lib/imgbuild", "SSL_CERT_FILE=/kaniko/ssl/certs/ca-certificates.crt"}
	proc["user"] = map[string]any{"uid": 0, "gid": 0}
	proc["noNewPrivileges"] = true
	proc["capabilities"] = map[string]any{"bounding": podCaps, "effective": podCaps, "permitted": podCaps}
	linux := spec["linux"].(map[string]any)
	// Pod namespaces, the host's network (to reach its registry on
	// loopback, as a pod reaches a registry service).
	linux["namespaces"] = []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}}
	linux["uidMappings"] = []map[string]any{{"containerID": 0, "hostID": podIDBase, "size": 65536}}
	linux["gidMappings"] = []map[string]any{{"containerID": 0, "hostID": podIDBase, "size": 65536}}
	// procMount: Unmasked.
	delete(linux, "maskedPaths")
	delete(linux, "readonlyPaths")
	// sysfs needs the network namespace; a pod in the host's network
	// gets the host's /sys read-only, as rootless runc does.
	var mounts []map[string]any
	for _, m := range spec["mounts"].([]any) {
		mm := m.(map[string]any)
		switch mm["destination"] {
		case "/sys":
			mounts = append(mounts, map[string]any{"destination": "/sys", "type": "none", "source": "/sys", "options": []string{"rbind", "nosuid", "noexec", "nodev", "ro"}})
		case "/sys/fs/cgroup":
		default:
			mounts = append(mounts, mm)
		}
	}
	spec["mounts"] = mounts
	return spec
}

func mustCopy(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	testutil.Require(t, err == nil, "reading %s: %v", src, err)
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// untarReader unpacks a flattened image filesystem, links included.
func untarReader(t *testing.T, rc io.ReadCloser, dst string) {
	t.Helper()
	defer rc.Close()
	cmd := exec.Command("tar", "-x", "-C", dst)
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
}
