package cmd

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/imgbuild/imgbuild/internal/k8stest"
	"github.com/imgbuild/imgbuild/internal/podsim"
	"github.com/imgbuild/imgbuild/internal/testutil"
)

// noRegistryAuth is the docker config the simulated pods' registry
// Secret holds: the test registry takes anonymous pushes.
var noRegistryAuth = podsim.WithSecret("registry-credentials", map[string]string{".dockerconfigjson": `{"auths":{}}`})

// TestImageRunsAsPod builds imgbuild's own image with imgbuild, then runs
// it as hack/k8s/job-userns.yaml's pod (hostUsers: false: uid 0 inside is
// uid 200000 outside, the default capabilities, /proc unmasked, not
// privileged) with kaniko's command line: /kaniko/executor builds a
// Dockerfile with a RUN step that chowns to another ID and pushes it to the
// host's registry.
func TestImageRunsAsPod(t *testing.T) {
	e := setup(t)
	img := releaseImage(t, e)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ref := e.registry + "/e2e/from-pod:v1"
	p := derivePod(t, "job-userns.yaml", podsim.ImageOf(cfg.Config), noRegistryAuth,
		podsim.WithCommand("/kaniko/executor", "--context", "dir:///workspace", "--destination", ref, "--build-arg", "BASE="+e.base))
	if err := p.WriteFile(filepath.Join(p.Volumes["workspace"], "Dockerfile"), `ARG BASE
FROM ${BASE}
RUN echo "built in a pod" > /pod.txt && chown 1000:1000 /pod.txt
`, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runPod(t, p, e.runc, img); err != nil {
		t.Fatalf("the pod's build failed: %v", err)
	}
	pushed := pull(t, ref)
	if got := files(t, pushed)["pod.txt"]; got != "built in a pod\n" {
		t.Errorf("pod.txt = %q", got)
	}
	if got := fileEntries(t, pushed)["pod.txt"]; !strings.Contains(got, " 1000:1000 ") {
		t.Errorf("pod.txt = %s, want owner 1000:1000", got)
	}
}

// TestImageInPods runs imgbuild's image as each simulated pod of the issue
// (#12) and builds testdata/pods there (RUN with heredocs, cache, secret and
// tmpfs mounts, multi-stage, USER, SHELL, WORKDIR) with the manifest's own
// command line, pointed at the test registry. The pushed image must hold
// the files, modes and owners of a host build of the same Dockerfile, and
// the build secret must be in none of its bytes and not in the pod's
// output. BuildKit's rootless pod, pod (c) of the issue, has its own test
// (TestRootlessPodWithoutUserNamespaces): without newuidmap it cannot
// unpack this base image.
func TestImageInPods(t *testing.T) {
	e := setup(t)
	img := releaseImage(t, e)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	const token = "pod-token-7f3c9a1e"
	ctxDir := filepath.Join(e.repo, "testdata", "pods")

	hostRef := e.registry + "/in-pods/host:v1"
	r := imgbuildEnv(t, []string{"POD_TOKEN=" + token}, "", "build", "--root", t.TempDir(), "--runc", e.runc,
		"--progress", "plain", "--build-arg", "BASE="+e.base, "--secret", "id=pod-token,env=POD_TOKEN",
		"--tag", hostRef, "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("host build of %s: %s", ctxDir, r.stderr)
	}
	want := fileEntries(t, pull(t, hostRef))

	for _, tc := range []struct {
		name     string
		manifest string
		opts     []podsim.Option
		rung     string // the executor rung imgbuild should pick there
	}{
		{"a-default-pod", "job-default-pod.yaml", nil, "inplace"},
		{"b-default-pod-unconfined", "job-default-pod.yaml", []podsim.Option{podsim.SeccompUnconfined()}, "runc-no-sandbox"},
		{"d-userns", "job-userns.yaml", nil, "runc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.opts) == 0 {
				// A row running the manifest as shipped expects the
				// rung the manifest claims.
				job, err := k8stest.LoadNamed(tc.manifest)
				if err != nil {
					t.Fatal(err)
				}
				if got := job.Annotations[k8stest.ExecutorAnnotation]; got != tc.rung {
					t.Errorf("%s claims executor %q, the test expects %q", tc.manifest, got, tc.rung)
				}
			}
			prefix := e.registry + "/in-pods/" + tc.name
			opts := append([]podsim.Option{noRegistryAuth, podsim.WithRegistry(prefix),
				podsim.WithArgs("--build-arg=BASE="+e.base, "--secret=id=pod-token,env=POD_TOKEN"),
				podsim.WithEnv("POD_TOKEN=" + token)}, tc.opts...)
			p := derivePod(t, tc.manifest, podsim.ImageOf(cfg.Config), opts...)
			ws, ok := p.Volumes["workspace"]
			testutil.Require(t, ok, "%s has no workspace volume", tc.manifest)
			if err := p.CopyDir(ctxDir, ws); err != nil {
				t.Fatal(err)
			}
			out, err := runPod(t, p, e.runc, img)
			if err != nil {
				t.Fatalf("the build in %s's pod failed: %v", tc.manifest, err)
			}
			// runc is the plain default and says nothing; the lower rungs
			// say which they are.
			if line := "executor " + tc.rung + " ("; tc.rung != "runc" && !strings.Contains(out, line) {
				t.Errorf("the pod's output lacks %q", line)
			}
			pushed := pull(t, prefix+"/app:latest")
			if diff := cmp.Diff(want, fileEntries(t, pushed)); diff != "" {
				t.Errorf("the pod's image differs from the host's (-host +pod):\n%s", diff)
			}
			if strings.Contains(string(allBlobs(t, pushed)), token) {
				t.Error("the build secret is in the pushed image")
			}
			if strings.Contains(out, token) {
				t.Error("the build secret is in the pod's output")
			}
		})
	}
}

var (
	releaseOnce sync.Once
	releaseImg  v1.Image
	releaseErr  error
)

// releaseImage builds the repo's Dockerfile, the release image, once per
// test run with this run's imgbuild and runc.
func releaseImage(t *testing.T, e e2e) v1.Image {
	t.Helper()
	releaseOnce.Do(func() { releaseImg, releaseErr = buildRepoImage(t, e, "") })
	if releaseErr != nil {
		t.Fatal(releaseErr)
	}
	if releaseImg == nil {
		t.Fatal("an earlier test failed to build the release image")
	}
	return releaseImg
}

// buildRepoImage builds target ("" for the default) of the repo's
// Dockerfile from a context laid out as make build runc leaves it.
func buildRepoImage(t *testing.T, e e2e, target string) (v1.Image, error) {
	imgCtx := t.TempDir()
	mustCopy(t, filepath.Join(e.repo, "Dockerfile"), filepath.Join(imgCtx, "Dockerfile"), 0o644)
	mustCopy(t, filepath.Join(e.repo, ".dockerignore"), filepath.Join(imgCtx, ".dockerignore"), 0o644)
	mustCopy(t, binary, filepath.Join(imgCtx, "bin", "imgbuild"), 0o755)
	mustCopy(t, e.runc, filepath.Join(imgCtx, "bin", "runc"), 0o755)
	mustCopy(t, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(imgCtx, "bin", "ca-certificates.crt"), 0o644)
	if target == "debug" {
		mustCopy(t, "/bin/busybox", filepath.Join(imgCtx, "bin", "busybox"), 0o755)
	}
	if err := os.MkdirAll(filepath.Join(imgCtx, "hack"), 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(e.repo, "hack", "image"), filepath.Join(imgCtx, "hack")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copying hack/image: %w %s", err, out)
	}
	// The layout outlives this test: TestMain removes binaryDir.
	ociDir := filepath.Join(binaryDir, "repo-image-layout"+target)
	args := []string{"build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "quiet", "-o", "type=oci,tar=false,dest=" + ociDir}
	if target != "" {
		args = append(args, "--target", target)
	}
	r := imgbuild(t, "", append(args, imgCtx)...)
	if r.code != 0 {
		return nil, fmt.Errorf("building the repo's image (target %q): %s", target, r.stderr)
	}
	h, err := v1.NewHash(strings.TrimSpace(r.stdout))
	if err != nil {
		return nil, err
	}
	p, err := layout.FromPath(ociDir)
	if err != nil {
		return nil, err
	}
	return p.Image(h)
}

// TestDebugImage builds the Dockerfile's debug target, kaniko's :debug, and
// runs the GitLab example's script line in it (chrooted, as the job's
// container would): it has a shell, and writes the docker config.
func TestDebugImage(t *testing.T) {
	e := setup(t)
	_, err := os.Stat("/bin/busybox")
	testutil.Require(t, err == nil, "no /bin/busybox: install busybox-static (make deps)")
	img, err := buildRepoImage(t, e, "debug")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	untarReader(t, mutate.Extract(img), root)
	b, err := os.ReadFile(filepath.Join(e.repo, "hack", "ci", "gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "- echo "); ok {
			line = "echo " + s
		}
	}
	if line == "" {
		t.Fatal("no echo line in hack/ci/gitlab-ci.yml")
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chroot", root, "/bin/sh", "-c", line)
	cmd.Env = append(cfg.Config.Env, "CI_REGISTRY=registry.example.com", "CI_REGISTRY_USER=ci", "CI_REGISTRY_PASSWORD=secret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the GitLab script line in the debug image: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(root, "kaniko", ".docker", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"auths":{"registry.example.com":{"auth":"Y2k6c2VjcmV0"}}}` + "\n"; string(got) != want {
		t.Errorf("config.json = %q, want %q", got, want)
	}
	// The shell lives under /kaniko, which the in-place executor keeps.
	entries := fileEntries(t, img)
	for p, want := range map[string]string{"bin/sh": "/kaniko/busybox/sh", "busybox": "/kaniko/busybox", "kaniko/busybox/sh": "/kaniko/busybox/busybox"} {
		if !strings.HasSuffix(entries[p], " "+want) {
			t.Errorf("%s = %q, want a link to %s", p, entries[p], want)
		}
	}
	// And the release image has none of it.
	for p := range fileEntries(t, releaseImage(t, e)) {
		if strings.Contains(p, "busybox") || p == "bin/sh" {
			t.Errorf("the release image holds %s", p)
		}
	}
}

// fileEntries returns the flattened filesystem of img: path → type, mode,
// owner and content digest (or link target), what two builds of one
// Dockerfile must agree on.
func fileEntries(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		p := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		what := h.Linkname
		if h.Typeflag == tar.TypeReg {
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				t.Fatal(err)
			}
			what = fmt.Sprintf("%x", sum.Sum(nil))[:16]
		}
		out[p] = fmt.Sprintf("%c %o %d:%d %s", h.Typeflag, h.Mode, h.Uid, h.Gid, what)
	}
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
