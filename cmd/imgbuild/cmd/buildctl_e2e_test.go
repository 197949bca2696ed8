package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// seedLine is the buildctl line of the pipelines imgbuild replaces the
// daemon in, with the registry's address for REG.
func seedLine(reg string) []string {
	return []string{"build", "--frontend", "dockerfile.v0", "--local", "context=.", "--local", "dockerfile=.",
		"--output", "type=image,name=" + reg + "/app:tag,push=true"}
}

// buildctlAt runs the test binary linked as "buildctl", in dir, on the
// state dir root, with the test's runc found on $PATH as a machine's would
// be: the command line is buildctl's alone.
func (e e2e) buildctlAt(t *testing.T, dir, root string, args ...string) result {
	t.Helper()
	link := filepath.Join(t.TempDir(), "buildctl")
	if err := os.Symlink(binary, link); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(t.Context(), link, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "IMGBUILD_ROOT="+root, "PATH="+filepath.Dir(e.runc)+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running buildctl: %v", err)
		}
		code = ee.ExitCode()
	}
	t.Logf("buildctl %s\n--- exit %d, stderr:\n%s", strings.Join(args, " "), code, errb.String())
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// TestBuildctlSeedLine runs the seed's buildctl line verbatim, with the
// binary invoked as buildctl in the context directory, and no daemon: the
// image is pushed, with the file its RUN step wrote.
func TestBuildctlSeedLine(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reg := e.registry + "/e2e/buildctl-seed"
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM " + e.base + "\nCOPY app.txt /app.txt\nRUN echo \"built by buildctl from $(cat /app.txt)\" > /built.txt\n",
		"app.txt":    "the context",
	})
	r := e.buildctlAt(t, dir, t.TempDir(), seedLine(reg)...)
	if r.code != 0 {
		t.Fatalf("buildctl failed:\n%s", r.stderr)
	}
	img := pull(t, reg+"/app:tag")
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	if mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(r.stdout); got != d.String() {
		t.Errorf("printed digest %q, pushed %s", got, d)
	}
	if got := files(t, img)["built.txt"]; got != "built by buildctl from the context\n" {
		t.Errorf("built.txt = %q", got)
	}
	if strings.Contains(r.stderr, "--addr") {
		t.Errorf("the default --addr earned a note:\n%s", r.stderr)
	}
}

// TestBuildctlRegistryCacheReuse exports a max-mode registry cache with
// --export-cache and rebuilds on a fresh state dir with --import-cache: the
// steps are CACHED, the layers the same, and --metadata-file names the
// pushed digest.
func TestBuildctlRegistryCacheReuse(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "in.txt": "input\n"})
	cacheRef := e.registry + "/e2e/buildctl-cache:buildcache"
	first, second := e.registry+"/e2e/buildctl-cached:v1", e.registry+"/e2e/buildctl-cached:v2"
	common := []string{"build", "--frontend", "dockerfile.v0", "--local", "context=.", "--local", "dockerfile=.",
		"--opt", "build-arg:BASE=" + e.base, "--progress", "plain"}
	r := e.buildctlAt(t, dir, t.TempDir(), append(common, "--output", "type=image,name="+first+",push=true",
		"--export-cache", "type=registry,ref="+cacheRef+",mode=max")...)
	if r.code != 0 {
		t.Fatalf("first build failed:\n%s", r.stderr)
	}
	meta := filepath.Join(t.TempDir(), "metadata.json")
	r = e.buildctlAt(t, dir, t.TempDir(), append(common, "--output", "type=image,name="+second+",push=true",
		"--import-cache", "type=registry,ref="+cacheRef, "--metadata-file", meta)...)
	if r.code != 0 {
		t.Fatalf("second build failed:\n%s", r.stderr)
	}
	for _, step := range []string{"COPY in.txt", `RUN echo "step one`} {
		if !stepCached(t, r.stderr, step) {
			t.Errorf("step %q was not cached on the fresh state dir:\n%s", step, r.stderr)
		}
	}
	if got, want := layerDigests(t, second), layerDigests(t, first); !slices.Equal(got, want) {
		t.Errorf("layers %v, want %v: a step ran again", got, want)
	}
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("metadata file: %v\n%s", err, b)
	}
	d, err := pull(t, second).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if m["containerimage.digest"] != d.String() {
		t.Errorf("metadata containerimage.digest = %v, want %s", m["containerimage.digest"], d)
	}
}

// TestBuildctlArgv0Rootless runs the seed's line as an unprivileged user
// with imgbuild installed as "buildctl": the re-exec into a user namespace
// (named imgbuild, its args already `buildctl build …`) builds and pushes.
func TestBuildctlArgv0Rootless(t *testing.T) {
	e := setup(t)
	uid, gid := rootlessUser(t)
	home := userHome(t, uid, gid)
	ctx := filepath.Join(home, "ctx")
	if err := os.Mkdir(ctx, 0o755); err != nil {
		t.Fatal(err)
	}
	df := filepath.Join(ctx, "Dockerfile")
	if err := os.WriteFile(df, []byte("FROM "+e.base+"\nRUN echo \"rootless buildctl, uid $(id -u)\" > /built.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ctx, df} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary's directory is private to root; give the user a copy.
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(home, "buildctl")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	reg := e.registry + "/e2e/buildctl-rootless"
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, seedLine(reg)...)
	cmd.Dir = ctx
	cmd.Env = []string{"HOME=" + home, "PATH=" + filepath.Dir(e.runc) + ":/usr/sbin:/usr/bin:/sbin:/bin", "USER=builder"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	t.Logf("as %d: buildctl %s\n--- stderr:\n%s", uid, strings.Join(seedLine(reg), " "), errb.String())
	if err != nil {
		t.Fatalf("rootless buildctl: %v", err)
	}
	if got := files(t, pull(t, reg+"/app:tag"))["built.txt"]; got != "rootless buildctl, uid 0\n" {
		t.Errorf("built.txt = %q", got)
	}
}
