package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// rootlessUser returns a test user with a subordinate ID range, creating it
// when missing (the tests run as root in CI).
func rootlessUser(t *testing.T) (uid, gid int) {
	t.Helper()
	const name = "imgbuild-rootless"
	u, err := user.Lookup(name)
	if err != nil {
		out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput()
		testutil.Require(t, err == nil, "useradd %s: %v %s", name, err, out)
		if u, err = user.Lookup(name); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile("/etc/subuid")
	if !strings.Contains(string(b), name+":") {
		out, err := exec.Command("usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name).CombinedOutput()
		testutil.Require(t, err == nil, "usermod: %v %s", err, out)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// runAs runs the imgbuild binary as uid:gid, with no capabilities, as a
// rootless pod's process would be.
func (e e2e) runAs(t *testing.T, uid, gid int, home string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := commandAs(t, uid, gid, home, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	t.Logf("as %d: imgbuild %s\n--- exit %d, stderr:\n%s", uid, strings.Join(args, " "), code, errb.String())
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// commandAs is the imgbuild binary as uid:gid, with no capabilities, as a
// rootless pod's process would be.
func commandAs(t *testing.T, uid, gid int, home string, args ...string) *exec.Cmd {
	t.Helper()
	// The test binary's directory is private to root; give the user a copy.
	bin := filepath.Join(home, "imgbuild")
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "USER=builder"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	return cmd
}

// userHome makes a directory owned by uid for the state dir and context.
func userHome(t *testing.T, uid, gid int) string {
	t.Helper()
	// Not t.TempDir: its parent is private to root.
	base, err := os.MkdirTemp("", "imgbuild-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(base, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	return home
}

// TestRootlessBuild builds and pushes as an unprivileged user: imgbuild
// enters its own user namespace (newuidmap with the user's subordinate
// range), runs RUN steps with rootless runc and pushes to the registry.
func TestRootlessBuild(t *testing.T) {
	e := setup(t)
	uid, gid := rootlessUser(t)
	home := userHome(t, uid, gid)
	ctx := filepath.Join(home, "ctx")
	os.Mkdir(ctx, 0o755)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(`ARG BASE
FROM ${BASE}
RUN echo "uid $(id -u) in the build" > /who.txt && mkdir /owned && chown 1000:1000 /owned
`), 0o644)
	os.Chown(ctx, uid, gid)
	os.Chown(filepath.Join(ctx, "Dockerfile"), uid, gid)

	ref := e.registry + "/e2e/rootless:v1"
	r := e.runAs(t, uid, gid, home, "build", "--runc", e.runc, "--progress", "plain",
		"--build-arg", "BASE="+e.base, "-t", ref, "--push", ctx)
	if r.code != 0 {
		t.Fatalf("rootless build failed:\n%s", r.stderr)
	}
	img := pull(t, ref)
	if got := files(t, img)["who.txt"]; got != "uid 0 in the build\n" {
		t.Errorf("who.txt = %q", got)
	}
	var owned bool
	for _, l := range layerFiles(t, img) {
		if _, ok := l["owned"]; ok {
			owned = true
		}
	}
	if !owned {
		t.Error("the chowned directory is missing")
	}
	// The state dir went to the user's XDG data dir, owned by the user.
	st := filepath.Join(home, ".local", "share", "imgbuild")
	fi, err := os.Stat(st)
	if err != nil {
		t.Fatalf("state dir: %v", err)
	}
	if fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Errorf("state dir %s owned by %d, want %d", st, fi.Sys().(*syscall.Stat_t).Uid, uid)
	}
}

// TestRootlessSingleIDMapping builds as a user without a subordinate ID
// range (nobody): imgbuild maps only its own uid and gid, with a note saying
// so, and still runs RUN steps.
func TestRootlessSingleIDMapping(t *testing.T) {
	e := setup(t)
	const nobody = 65534
	home := userHome(t, nobody, nobody)
	ctx := filepath.Join(home, "ctx")
	os.Mkdir(ctx, 0o755)
	// With one ID mapped, only root-owned files can exist in the build: a
	// base image with files of other owners fails to unpack (BuildKit then
	// says to add subordinate IDs), so the image starts from scratch.
	bb, err := os.ReadFile("/bin/busybox")
	testutil.Require(t, err == nil, "no /bin/busybox (busybox-static)")
	os.WriteFile(filepath.Join(ctx, "busybox"), bb, 0o755)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo single > /single.txt\"]\n"), 0o644)
	out := filepath.Join(home, "out.tar")
	r := e.runAs(t, nobody, nobody, home, "build", "--root", filepath.Join(home, "state"), "--runc", e.runc,
		"--progress", "plain", "-o", "type=docker,dest="+out, ctx)
	if r.code != 0 {
		t.Fatalf("single-ID rootless build failed:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "mapping only your own uid") {
		t.Errorf("no warning about the single-ID mapping:\n%s", r.stderr)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := files(t, img)["single.txt"]; got != "single\n" {
		t.Errorf("single.txt = %q", got)
	}
}

// TestRootlessDuPruneKeepCache runs du and prune as an unprivileged user:
// they enter the user namespace builds run in, so they see the state dir
// with the builds' snapshotter, the build cache survives them and the next
// build has every step CACHED.
func TestRootlessDuPruneKeepCache(t *testing.T) {
	e := setup(t)
	uid, gid := rootlessUser(t)
	home := userHome(t, uid, gid)
	ctx := filepath.Join(home, "ctx")
	os.Mkdir(ctx, 0o755)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\nCOPY in.txt /in.txt\nRUN echo one > /one\nRUN echo two > /two\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "in.txt"), []byte("in\n"), 0o644)
	for _, p := range []string{ctx, filepath.Join(ctx, "Dockerfile"), filepath.Join(ctx, "in.txt")} {
		os.Chown(p, uid, gid)
	}
	state := filepath.Join(home, "state")
	run := func(args ...string) result {
		t.Helper()
		r := e.runAs(t, uid, gid, home, append(args, "--root", state, "--runc", e.runc)...)
		if r.code != 0 {
			t.Fatalf("rootless imgbuild %s failed:\n%s", args[0], r.stderr)
		}
		if strings.Contains(r.stderr, "due to missing blobs") {
			t.Errorf("rootless imgbuild %s deleted build records:\n%s", args[0], r.stderr)
		}
		return r
	}
	du := func() duReport {
		t.Helper()
		r := run("du", "--format", "json")
		var rep duReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("du output %q: %v", r.stdout, err)
		}
		return rep
	}
	build := func() result {
		t.Helper()
		return run("build", "--progress", "plain", "--build-arg", "BASE="+e.base, ctx)
	}

	build()
	before := du()
	if len(before.Records) == 0 {
		t.Fatal("du lists no build cache records after a build")
	}
	run("prune", "--filter", "until=24h")
	after := du()
	if len(after.Records) != len(before.Records) {
		t.Errorf("du lists %d build cache records after prune --filter until=24h and a second du, want %d", len(after.Records), len(before.Records))
	}
	r := build()
	for _, step := range []string{"COPY in.txt", "RUN echo one", "RUN echo two"} {
		if !stepCached(t, r.stderr, step) {
			t.Errorf("step %q was not cached after du and prune:\n%s", step, r.stderr)
		}
	}
}

// TestRootlessKillNineStopsRun SIGKILLs a rootless imgbuild while a RUN step
// sleeps: the build in the user namespace dies with it, and within
// orphanGrace neither it nor the step's processes run any more.
func TestRootlessKillNineStopsRun(t *testing.T) {
	e := setup(t)
	uid, gid := rootlessUser(t)
	home := userHome(t, uid, gid)
	ctx := filepath.Join(home, "ctx")
	os.Mkdir(ctx, 0o755)
	run, marker := longStep(30)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\n"+run), 0o644)
	root := filepath.Join(home, "state")
	cmd := commandAs(t, uid, gid, home, "build", "--root", root, "--runc", e.runc, "--progress", "plain",
		"--build-arg", "BASE="+e.base, ctx)
	stderr := startCmd(t, cmd)
	waitForProcess(t, marker, 2*time.Minute, stderr)
	killed := killNine(t, cmd)
	assertProcessesGone(t, killed, "rootless build", marker, root)
}

// TestRootlessStateDirOfAnotherUser: a state dir the user cannot write
// fails before the re-exec, naming it and --root, not deep in BuildKit.
func TestRootlessStateDirOfAnotherUser(t *testing.T) {
	e := setup(t)
	uid, gid := rootlessUser(t)
	home := userHome(t, uid, gid)
	theirs := filepath.Join(filepath.Dir(home), "roots-state")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := filepath.Join(home, "ctx")
	os.Mkdir(ctx, 0o755)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	r := e.runAs(t, uid, gid, home, "build", "--root", theirs, "--runc", e.runc, ctx)
	if r.code == 0 || !strings.Contains(r.stderr, "state dir "+theirs+" is not writable by uid "+strconv.Itoa(uid)) || !strings.Contains(r.stderr, "--root") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
