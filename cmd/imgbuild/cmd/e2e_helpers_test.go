package cmd

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// e2e is what the end-to-end tests share: a real distribution registry with
// a busybox base image in it, the runc to use and the repo's root.
type e2e struct {
	registry string // host:port
	base     string // busybox reference in registry
	runc     string
	repo     string
}

var (
	e2eOnce sync.Once
	e2eEnv  e2e
	e2eErr  error
	e2eStop func()
)

// setup returns the shared environment, starting the registry on first use.
// Missing prerequisites skip locally and fail in CI.
func setup(t *testing.T) e2e {
	t.Helper()
	testutil.RequireRoot(t)
	needBinary(t)
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..", "..")
	runc := filepath.Join(repo, "bin", "runc")
	_, err := os.Stat(runc)
	testutil.Require(t, err == nil, "no %s: run `make runc`", runc)
	_, err = exec.LookPath("docker-registry")
	testutil.Require(t, err == nil, "no docker-registry binary: run `make deps`")
	e2eOnce.Do(func() {
		addr, stop, err := testutil.StartSharedRegistry()
		if err != nil {
			e2eErr = err
			return
		}
		e2eStop = stop
		base, err := testutil.PushBusybox(context.Background(), addr)
		if err != nil {
			e2eErr = err
			return
		}
		e2eEnv = e2e{registry: addr, base: base, runc: runc, repo: repo}
	})
	if e2eErr != nil {
		t.Fatalf("setting up registry: %v", e2eErr)
	}
	return e2eEnv
}

// binary is imgbuild built for this test run, on first use (see
// needBinary): the unit tests of this package do not wait for it. The
// end-to-end tests run it as a process, as users do: BuildKit keeps
// process-wide caches keyed by the state dir's records, so one process
// serves one state dir's builds.
var (
	binary     string
	binaryDir  string
	binaryOnce sync.Once
	binaryErr  error
)

// needBinary builds imgbuild once per test run and sets binary.
func needBinary(t testing.TB) {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imgbuild-e2e-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryDir = dir
		out := filepath.Join(dir, "imgbuild")
		build := exec.Command("go", "build", "-o", out, "github.com/imgbuild/imgbuild/cmd/imgbuild")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		// make builds against the patched BuildKit that --executor inplace
		// needs (third_party/buildkit); a go test run by hand gets it too
		// once make has written the workspace.
		if os.Getenv("GOWORK") == "" {
			if w, err := filepath.Abs("../../../bin/go.work"); err == nil {
				if _, err := os.Stat(w); err == nil {
					build.Env = append(build.Env, "GOWORK="+w)
				}
			}
		}
		if b, err := build.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("building imgbuild: %w\n%s", err, b)
			return
		}
		binary = out
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if e2eStop != nil {
		e2eStop()
	}
	if hostileEnv.s != nil {
		hostileEnv.s.Remove()
	}
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}

// result is one imgbuild run.
type result struct {
	stdout, stderr string
	code           int
}

// imgbuild runs the imgbuild binary.
func imgbuild(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return imgbuildEnv(t, nil, stdin, args...)
}

// run runs a command line in-process through execute, for the tests of
// what the CLI checks before any work starts. The state dir defaults to a
// fresh temporary one, so that nothing reaches the machine's.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	t.Setenv("IMGBUILD_ROOT", t.TempDir())
	// As if already in the user namespace: a non-root run must not
	// re-execute the test binary.
	t.Setenv("_IMGBUILD_USERNS_CHILD", "2")
	var out, errb bytes.Buffer
	code := execute(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	t.Logf("imgbuild %s (in-process)\n--- exit %d, stderr:\n%s", strings.Join(args, " "), code, errb.String())
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// imgbuildEnv runs the imgbuild binary with extra environment variables.
func imgbuildEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	needBinary(t)
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running imgbuild: %v", err)
		}
		code = ee.ExitCode()
	}
	t.Logf("imgbuild %s\n--- exit %d, stderr:\n%s", strings.Join(args, " "), code, errb.String())
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// build runs `imgbuild build` with the test's runc, a state dir and plain
// progress, plus args.
func (e e2e) build(t *testing.T, root string, args ...string) result {
	t.Helper()
	full := append([]string{"build", "--root", root, "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE=" + e.base}, args...)
	return imgbuild(t, "", full...)
}

// writeContext makes a build context from a map of path to content.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pull fetches ref from the registry and validates it (fully unless opts
// say otherwise).
func pull(t *testing.T, ref string, opts ...validate.Option) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if err := validate.Image(img, opts...); err != nil {
		t.Fatalf("validating %s: %v", ref, err)
	}
	return img
}

// files returns the flattened filesystem of img: path → content (symlinks as
// "-> target", directories as "dir").
func files(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	return tarFiles(t, rc)
}

func tarFiles(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		p := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		switch h.Typeflag {
		case tar.TypeDir:
			out[p] = "dir"
		case tar.TypeSymlink:
			out[p] = "-> " + h.Linkname
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = string(b)
		}
	}
}

// layerFiles lists each layer's entries, whiteouts included, as written.
func layerFiles(t *testing.T, img v1.Image) []map[string]string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarFiles(t, rc))
		rc.Close()
	}
	return out
}

// allBlobs returns every byte the image is made of: manifest, config and
// uncompressed layers, to search for things that must not be there.
func allBlobs(t *testing.T, img v1.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	m, _ := img.RawManifest()
	c, _ := img.RawConfigFile()
	buf.Write(m)
	buf.Write(c)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(&buf, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	return buf.Bytes()
}

// stepCached reports whether the plain progress log shows the step whose
// name contains step as CACHED.
func stepCached(t *testing.T, log, step string) bool {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		num, rest, ok := strings.Cut(line, " ")
		if ok && strings.HasPrefix(num, "#") && strings.HasPrefix(rest, "[") && strings.Contains(rest, step) {
			return strings.Contains(log, num+" CACHED\n")
		}
	}
	t.Fatalf("no step %q in the log", step)
	return false
}
