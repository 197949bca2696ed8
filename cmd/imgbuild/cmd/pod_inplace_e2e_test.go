package cmd

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imgbuild/imgbuild/internal/podsim"
	"github.com/imgbuild/imgbuild/internal/testutil"
)

// mountSyscalls are the system calls that mount or unmount.
var mountSyscalls = []string{"mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "move_mount", "open_tree", "mount_setattr", "pivot_root"}

// killOnMount makes the pod's seccomp profile kill the process that calls
// any of mountSyscalls: a build that attempts one dies, whatever it would
// have done with the EPERM the default profile returns.
func killOnMount(t *testing.T, p *podsim.Pod) {
	t.Helper()
	sc := p.Spec.Linux.Seccomp
	testutil.Require(t, sc != nil, "%s's pod has no seccomp profile", p.Manifest)
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: mountSyscalls, Action: specs.ActKillProcess})
}

// inPlacePod is job-default-pod.yaml's pod (the in-place rung) building
// dockerfile, pushed to prefix/app:latest, with extra podOptions.
func inPlacePod(t *testing.T, e e2e, prefix, dockerfile string, opts ...podsim.Option) (*podsim.Pod, string) {
	t.Helper()
	img := releaseImage(t, e)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]podsim.Option{noRegistryAuth, podsim.WithRegistry(prefix), podsim.WithArgs("--build-arg=BASE=" + e.base)}, opts...)
	p := derivePod(t, "job-default-pod.yaml", podsim.ImageOf(cfg.Config), opts...)
	if dockerfile != "" {
		ws, ok := p.Volumes["workspace"]
		testutil.Require(t, ok, "job-default-pod.yaml has no workspace volume")
		if err := p.WriteFile(filepath.Join(ws, "Dockerfile"), dockerfile, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p, prefix + "/app:latest"
}

// TestInPlaceNoMount builds testdata/pods in the default pod with a seccomp
// profile that kills any mount(2), umount2(2) or new-mount-API call: the
// in-place rung attempts none, from the first pull to the push.
func TestInPlaceNoMount(t *testing.T) {
	e := setup(t)
	p, ref := inPlacePod(t, e, e.registry+"/inplace/nomount", "", podsim.WithArgs("--secret=id=pod-token,env=POD_TOKEN"), podsim.WithEnv("POD_TOKEN=x"))
	ctxDir := filepath.Join(e.repo, "testdata", "pods")
	if err := p.CopyDir(ctxDir, p.Volumes["workspace"]); err != nil {
		t.Fatal(err)
	}
	killOnMount(t, p)
	out, err := runPod(t, p, e.runc, releaseImage(t, e))
	if err != nil {
		t.Fatalf("the build died or failed under a seccomp profile that kills mount calls: %v", err)
	}
	if !strings.Contains(out, "executor inplace (") {
		t.Errorf("the pod did not say it runs the in-place executor:\n%s", out)
	}
	if got := files(t, pull(t, ref))["home/app/greeting.txt"]; got != "pods\n" {
		t.Errorf("greeting.txt = %q", got)
	}
}

// TestInPlaceExitCode: a failed RUN ends the in-place build with the step's
// own exit status, as kaniko's executor does, naming the Dockerfile line.
func TestInPlaceExitCode(t *testing.T) {
	e := setup(t)
	p, _ := inPlacePod(t, e, e.registry+"/inplace/exit", "ARG BASE\nFROM ${BASE}\nRUN echo before\nRUN exit 7\n")
	out, err := runPod(t, p, e.runc, releaseImage(t, e))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("pod ended with %v, want exit status 7", err)
	}
	if !strings.Contains(out, "Dockerfile:4") || !strings.Contains(out, "exit code: 7") {
		t.Errorf("the error does not name the step and its code:\n%s", out)
	}
}

// TestInPlaceCacheMountPersists: a cache mount's content comes back in the
// next build on the same state dir (the pod's state volume, kept).
func TestInPlaceCacheMountPersists(t *testing.T) {
	e := setup(t)
	const df = `ARG BASE
FROM ${BASE}
ARG N
RUN --mount=type=cache,target=/var/cache/app echo "run $N" >> /var/cache/app/runs && cp /var/cache/app/runs /runs.txt && test ! -e /var/cache/app/../app.stub
`
	var state string
	for i, n := range []string{"1", "2"} {
		p, ref := inPlacePod(t, e, e.registry+"/inplace/cache"+n, df, podsim.WithArgs("--build-arg=N="+n))
		st, ok := p.Volumes["state"]
		testutil.Require(t, ok, "job-default-pod.yaml has no volume named state: %v", p.Volumes)
		if i > 0 {
			// The same state dir as the first pod's.
			if out, err := exec.Command("cp", "-a", state+"/.", st).CombinedOutput(); err != nil {
				t.Fatalf("copying the state volume: %v %s", err, out)
			}
		}
		if _, err := runPod(t, p, e.runc, releaseImage(t, e)); err != nil {
			t.Fatalf("build %s: %v", n, err)
		}
		want := "run 1\n"
		if n == "2" {
			want = "run 1\nrun 2\n"
		}
		img := pull(t, ref)
		if got := files(t, img)["runs.txt"]; got != want {
			t.Errorf("build %s: runs.txt = %q, want %q", n, got, want)
		}
		for f := range files(t, img) {
			if strings.HasPrefix(f, "var/cache/app") {
				t.Errorf("build %s: the cache mount's target %s is in the image", n, f)
			}
		}
		if i == 0 {
			state = t.TempDir()
			if out, err := exec.Command("cp", "-a", st+"/.", state).CombinedOutput(); err != nil {
				t.Fatalf("saving the state volume: %v %s", err, out)
			}
		}
	}
}

// TestInPlaceGitTokenHidden builds a git context with a token in the
// default pod: the token is in no file of the context, no layer, no log,
// and no /proc file of the build's processes a RUN step can read (the step
// dumps every environ and cmdline it can into the image).
func TestInPlaceGitTokenHidden(t *testing.T) {
	e := setup(t)
	const token = "ghp_inplace_3b1f9c7d2a"
	srv := gitServer(t, map[string]string{
		"Dockerfile": `ARG BASE
FROM ${BASE}
COPY . /src
RUN cat /src/.git/config > /gitconfig.txt
RUN for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null; echo; done > /procdump.txt; grep -c PATH= /procdump.txt > /procdump-count.txt
`,
		"app.txt": "app\n",
	}, token)
	host := strings.TrimPrefix(srv, "http://")
	p, ref := inPlacePod(t, e, e.registry+"/inplace/git", "",
		podsim.WithArgs("--context=git://"+host+"/app.git#refs/heads/main"),
		podsim.WithEnv("GIT_TOKEN="+token, "GIT_PULL_METHOD=http"))
	out, err := runPod(t, p, e.runc, releaseImage(t, e))
	if err != nil {
		t.Fatalf("git build in the default pod: %v", err)
	}
	img := pull(t, ref)
	fs := files(t, img)
	if !strings.Contains(fs["gitconfig.txt"], "url = http://"+host+"/app.git") {
		t.Errorf("gitconfig.txt = %q, want the remote without credentials", fs["gitconfig.txt"])
	}
	if fs["procdump-count.txt"] == "" || fs["procdump-count.txt"] == "0\n" {
		t.Errorf("the step read no environment from /proc (%q): the check proves nothing", fs["procdump-count.txt"])
	}
	if strings.Contains(string(allBlobs(t, img)), token) {
		t.Error("the git token is in the pushed image (context, layers or a /proc dump of the build's processes)")
	}
	if strings.Contains(out, token) {
		t.Error("the git token is in the pod's output")
	}
	// The pod's own files after the build: its volumes (context, state
	// dir) and its root filesystem, which the in-place rung rewrote.
	dirs := []string{filepath.Join(p.Dir, "rootfs")}
	for _, v := range p.Volumes {
		dirs = append(dirs, v)
	}
	for _, d := range dirs {
		if err := filepath.Walk(d, func(path string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), token) {
				t.Errorf("the git token is in %s", path)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// rootOwnedBase is the test busybox with every file given to root: all a
// single-ID user namespace can unpack.
func rootOwnedBase(t *testing.T, e e2e) string {
	t.Helper()
	base, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	flat := mutate.Extract(base)
	defer flat.Close()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(flat), tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: cfg.Architecture, OS: cfg.OS, Config: cfg.Config})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	ref := e.registry + "/base/root-owned:latest"
	if err := testutil.Push(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestRootlessPodWithoutUserNamespaces is BuildKit's rootless pod (pod (c)
// of issue 12): uid 1000, no capabilities, seccomp Unconfined, a masked
// /proc, no user namespace of the pod's own: job-rootless.yaml without
// hostUsers and procMount. imgbuild takes the runc-no-sandbox rung. The
// release image has no newuidmap, so only uid 1000 maps into imgbuild's user
// namespace: a Dockerfile on a base whose files are all root's builds and
// matches a host build; testdata/pods (files of uid 1000, chown, USER app)
// fails naming the fix.
func TestRootlessPodWithoutUserNamespaces(t *testing.T) {
	e := setup(t)
	img := releaseImage(t, e)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	base := rootOwnedBase(t, e)
	const df = `ARG BASE
FROM ${BASE} AS tools
RUN echo built > /t.txt && test -r /proc/self/status && echo zero > /dev/null
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && cp /cache/runs /runs.txt
RUN --mount=type=secret,id=pod-token,required=true wc -c < /run/secrets/pod-token > /secret-bytes.txt
FROM ${BASE}
COPY --from=tools /t.txt /runs.txt /secret-bytes.txt /out/
RUN echo final > /final.txt && chmod 0640 /final.txt
`
	ctxDir := writeContext(t, map[string]string{"Dockerfile": df})
	hostRef := e.registry + "/rootless-pod/host:v1"
	r := imgbuildEnv(t, []string{"POD_TOKEN=x1"}, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain",
		"--build-arg", "BASE="+base, "--secret", "id=pod-token,env=POD_TOKEN", "--tag", hostRef, "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("host build: %s", r.stderr)
	}
	want := fileEntries(t, pull(t, hostRef))

	pod := func(prefix, baseRef, ctx string) (*podsim.Pod, string) {
		p := derivePod(t, "job-rootless.yaml", podsim.ImageOf(cfg.Config), noRegistryAuth, podsim.WithoutUserNamespace(),
			podsim.WithRegistry(prefix), podsim.WithArgs("--build-arg=BASE="+baseRef, "--secret=id=pod-token,env=POD_TOKEN"), podsim.WithEnv("POD_TOKEN=x1"))
		ws, ok := p.Volumes["workspace"]
		testutil.Require(t, ok, "job-rootless.yaml has no workspace volume")
		if err := p.CopyDir(ctx, ws); err != nil {
			t.Fatal(err)
		}
		return p, prefix + "/app:latest"
	}
	p, ref := pod(e.registry+"/rootless-pod/ok", base, ctxDir)
	out, err := runPod(t, p, e.runc, img)
	if err != nil {
		t.Fatalf("build in the rootless pod: %v", err)
	}
	if !strings.Contains(out, "executor runc-no-sandbox (not root; mount(proc)") {
		t.Errorf("the pod did not say it runs runc-no-sandbox because of a masked /proc:\n%s", out)
	}
	if diff := cmp.Diff(want, fileEntries(t, pull(t, ref))); diff != "" {
		t.Errorf("the pod's image differs from the host's (-host +pod):\n%s", diff)
	}

	p, _ = pod(e.registry+"/rootless-pod/uids", e.base, filepath.Join(e.repo, "testdata", "pods"))
	out, err = runPod(t, p, e.runc, img)
	if err == nil {
		t.Fatal("testdata/pods built with a single uid mapped")
	}
	if !strings.Contains(out, "newuidmap/newgidmap not found") || !strings.Contains(out, "subordinate IDs") {
		t.Errorf("the failure does not say that only one uid maps and what fixes it:\n%s", out)
	}
}
