package cmd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// mountSyscalls are the system calls that mount or unmount.
var mountSyscalls = []string{"mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "move_mount", "open_tree", "mount_setattr", "pivot_root"}

// killOnMount makes the pod's seccomp profile kill the process that calls
// any of mountSyscalls: a build that attempts one dies, whatever it would
// have done with the EPERM the default profile returns.
func killOnMount(t *testing.T, p *simPod) {
	t.Helper()
	sc := p.spec.Linux.Seccomp
	testutil.Require(t, sc != nil, "%s's pod has no seccomp profile", p.manifest)
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: mountSyscalls, Action: specs.ActKillProcess})
}

// inPlacePod is job-default-pod.yaml's pod (the in-place rung) building
// dockerfile, pushed to prefix/app:latest, with extra podOptions.
func inPlacePod(t *testing.T, e e2e, prefix, dockerfile string, opts ...podOption) (*simPod, string) {
	t.Helper()
	img := releaseImage(t, e)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]podOption{noRegistryAuth, withRegistry(prefix), withArgs("--build-arg=BASE=" + e.base)}, opts...)
	p := derivePod(t, "job-default-pod.yaml", simImageOf(cfg.Config), opts...)
	if dockerfile != "" {
		ws, ok := p.volumes["workspace"]
		testutil.Require(t, ok, "job-default-pod.yaml has no workspace volume")
		if err := p.writeFile(filepath.Join(ws, "Dockerfile"), dockerfile, 0o644); err != nil {
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
	p, ref := inPlacePod(t, e, e.registry+"/inplace/nomount", "", withArgs("--secret=id=pod-token,env=POD_TOKEN"), withEnv("POD_TOKEN=x"))
	ctxDir := filepath.Join(e.repo, "testdata", "pods")
	if err := p.copyDir(ctxDir, p.volumes["workspace"]); err != nil {
		t.Fatal(err)
	}
	killOnMount(t, p)
	out, err := p.run(t, e.runc, releaseImage(t, e))
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
	out, err := p.run(t, e.runc, releaseImage(t, e))
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
		p, ref := inPlacePod(t, e, e.registry+"/inplace/cache"+n, df, withArgs("--build-arg=N="+n))
		st, ok := p.volumes["state"]
		testutil.Require(t, ok, "job-default-pod.yaml has no volume named state: %v", p.volumes)
		if i > 0 {
			// The same state dir as the first pod's.
			if out, err := exec.Command("cp", "-a", state+"/.", st).CombinedOutput(); err != nil {
				t.Fatalf("copying the state volume: %v %s", err, out)
			}
		}
		if _, err := p.run(t, e.runc, releaseImage(t, e)); err != nil {
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
		withArgs("--context=git://"+host+"/app.git#refs/heads/main"),
		withEnv("GIT_TOKEN="+token, "GIT_PULL_METHOD=http"))
	out, err := p.run(t, e.runc, releaseImage(t, e))
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
	dirs := []string{filepath.Join(p.dir, "rootfs")}
	for _, v := range p.volumes {
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
