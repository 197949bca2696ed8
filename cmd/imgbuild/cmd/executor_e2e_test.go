package cmd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

const executorDockerfile = `ARG BASE
FROM ${BASE}
COPY app.txt /app.txt
RUN echo "built by executor" > /built.txt
`

// executor runs `imgbuild executor` with the test's runc and a fresh state dir.
func (e e2e) executor(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	full := append([]string{"executor", "--root", t.TempDir(), "--runc", e.runc, "--build-arg", "BASE=" + e.base}, args...)
	return imgbuild(t, stdin, full...)
}

func TestExecutorDirContext(t *testing.T) {
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "dir context\n"})
	dest := e.registry + "/e2e/executor-dir:v1"
	out := t.TempDir()
	t.Setenv("BUILDER_OUTPUT", out)
	dest2 := e.registry + "/e2e/executor-dir2:latest"
	df, nd, ntd := filepath.Join(out, "digest"), filepath.Join(out, "name-digest"), filepath.Join(out, "name-tag-digest")
	r := e.executor(t, "", "--context", "dir://"+dir, "--destination", dest, "-d", dest2, "--snapshot-mode=redo", "--cache-run-layers",
		"--digest-file", df, "--image-name-with-digest-file", nd, "--image-name-tag-with-digest-file", ntd)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	digest := strings.TrimSpace(r.stdout)
	repo1, repo2 := e.registry+"/e2e/executor-dir", e.registry+"/e2e/executor-dir2"
	for path, want := range map[string]string{
		df: digest,
		// kaniko writes both name files from one buffer, so with the tag
		// file asked for its name file carries tags too; imgbuild writes
		// the documented REPOSITORY@DIGEST form.
		nd:  repo1 + "@" + digest + "\n" + repo2 + "@" + digest + "\n",
		ntd: repo1 + ":v1@" + digest + "\n" + repo2 + ":latest@" + digest + "\n",
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s = %q, want %q", filepath.Base(path), b, want)
		}
	}
	images, err := os.ReadFile(filepath.Join(out, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"digest":"` + digest + `","name":"` + dest + `"}` + "\n" + `{"digest":"` + digest + `","name":"` + dest2 + `"}` + "\n"; string(images) != want {
		t.Errorf("BUILDER_OUTPUT images = %q, want %q", images, want)
	}
	fs := files(t, pull(t, dest))
	if fs["app.txt"] != "dir context\n" || fs["built.txt"] != "built by executor\n" {
		t.Errorf("app.txt=%q built.txt=%q", fs["app.txt"], fs["built.txt"])
	}
	if !strings.Contains(r.stderr, "ignoring kaniko flags") || !strings.Contains(r.stderr, "--snapshot-mode") {
		t.Errorf("no warning about kaniko-internal flags:\n%s", r.stderr)
	}
}

func TestExecutorTarStdinContext(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct{ name, body string }{
		{"sub/Dockerfile", executorDockerfile},
		{"sub/app.txt", "tar context\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	dest := e.registry + "/e2e/executor-tar:v1"
	r := e.executor(t, buf.String(), "--context", "tar://stdin", "--context-sub-path", "sub", "--destination", dest)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := files(t, pull(t, dest))["app.txt"]; got != "tar context\n" {
		t.Errorf("app.txt = %q", got)
	}
}

// TestExecutorGitContext serves a local repository over git's smart HTTP
// protocol (git http-backend behind net/http/cgi) and builds from a commit
// that is not the branch head.
func TestExecutorGitContext(t *testing.T) {
	e := setup(t)
	gitBin, err := exec.LookPath("git")
	testutil.Require(t, err == nil, "git is not installed")
	backend := filepath.Join(execPath(t, gitBin), "git-http-backend")
	_, err = os.Stat(backend)
	testutil.Require(t, err == nil, "no git-http-backend at %s", backend)

	root := t.TempDir()
	repo := filepath.Join(root, "app.git")
	work := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "first commit\n"})
	git := func(dir string, args ...string) string {
		t.Helper()
		c := exec.Command("git", args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(work, "init", "-q", "-b", "main")
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "first")
	first := git(work, "rev-parse", "HEAD")
	os.WriteFile(filepath.Join(work, "app.txt"), []byte("second commit\n"), 0o644)
	git(work, "commit", "-q", "-am", "second")
	git(root, "clone", "-q", "--bare", work, repo)

	srv := httptest.NewServer(&cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("GIT_PULL_METHOD", "http")

	for _, tc := range []struct {
		ctx, want string
	}{
		{"git://" + host + "/app.git#refs/heads/main", "second commit\n"},
		{"git://" + host + "/app.git#refs/heads/main#" + first, "first commit\n"},
	} {
		dest := e.registry + "/e2e/executor-git:" + map[bool]string{true: "head", false: "first"}[tc.want == "second commit\n"]
		r := e.executor(t, "", "--context", tc.ctx, "--destination", dest)
		if r.code != 0 {
			t.Fatal(r.stderr)
		}
		if got := files(t, pull(t, dest))["app.txt"]; got != tc.want {
			t.Errorf("%s: app.txt = %q, want %q", tc.ctx, got, tc.want)
		}
	}
}

// TestExecutorGitContextToken builds from a git context behind basic auth
// with GIT_TOKEN, whose Dockerfile copies the whole clone, .git included,
// and prints its .git/config into the image: go-git sends the token only
// in the Authorization header, so no layer and no log line holds it. A
// wrong token fails before the build, naming the repository and not the
// token.
func TestExecutorGitContextToken(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tok := make([]byte, 20)
	rand.Read(tok)
	token := "ghp_" + hex.EncodeToString(tok)
	srv := gitServer(t, map[string]string{
		"Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY . /src\nRUN cat /src/.git/config > /cfg || true\n",
		"app.txt":    "from git\n",
	}, token)
	host := strings.TrimPrefix(srv, "http://")
	args := func(dest string) []string {
		return []string{"executor", "--root", t.TempDir(), "--runc", e.runc, "--build-arg", "BASE=" + e.base,
			"--context", "git://" + host + "/app.git#refs/heads/main", "--destination", dest}
	}

	dest := e.registry + "/e2e/executor-git-token:v1"
	r := imgbuildEnv(t, []string{"GIT_PULL_METHOD=http", "GIT_TOKEN=" + token}, "", args(dest)...)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	img := pull(t, dest)
	fs := files(t, img)
	// The clone's .git is in the image: the test has teeth.
	if fs["src/app.txt"] != "from git\n" || !strings.Contains(fs["cfg"], "url = http://"+host+"/app.git") {
		t.Errorf("src/app.txt = %q, cfg = %q", fs["src/app.txt"], fs["cfg"])
	}
	if _, ok := fs["src/.git/HEAD"]; !ok {
		t.Error("no src/.git/HEAD: the clone's .git was not copied")
	}
	basic := base64.StdEncoding.EncodeToString([]byte(token + ":"))
	for _, s := range []string{token, basic} {
		if bytes.Contains(allBlobs(t, img), []byte(s)) {
			t.Errorf("the pushed image holds the git token (as %q)", s)
		}
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("the build log holds the git token (as %q)", s)
		}
	}

	wrong := "ghp_" + strings.Repeat("0", 40)
	r = imgbuildEnv(t, []string{"GIT_PULL_METHOD=http", "GIT_TOKEN=" + wrong}, "", args(e.registry+"/e2e/executor-git-token:wrong")...)
	if r.code == 0 {
		t.Fatal("a wrong GIT_TOKEN built")
	}
	if !strings.Contains(r.stderr, "http://"+host+"/app.git") || !strings.Contains(r.stderr, "refused the credentials from GIT_TOKEN") {
		t.Errorf("the error does not name the repository and the refused token:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, wrong) {
		t.Errorf("the output holds the wrong token:\n%s", r.stderr)
	}
}

func execPath(t *testing.T, git string) string {
	t.Helper()
	out, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestExecutorRunExitCode checks kaniko's convention: a failing RUN's exit
// code is the executor's.
func TestExecutorRunExitCode(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN exit 42\n"})
	r := e.executor(t, "", "--context", dir, "--no-push")
	if r.code != 42 {
		t.Errorf("exit code %d, want 42 (the RUN's)\n%s", r.code, r.stderr)
	}
}

// TestExecutorOutputs checks --no-push with --tar-path and --oci-layout-path.
func TestExecutorOutputs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "outputs\n"})
	out := t.TempDir()
	r := e.executor(t, "", "--context", dir, "--no-push", "--destination", "example.com/app:v1",
		"--tar-path", filepath.Join(out, "image.tar"), "--oci-layout-path", filepath.Join(out, "layout"))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	var names []string
	entries, _ := os.ReadDir(out)
	for _, en := range entries {
		names = append(names, en.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "image.tar,layout" {
		t.Errorf("outputs = %v", names)
	}
}

// TestExecutorArgv0 checks that imgbuild started as "executor" (the image's
// /kaniko/executor link) behaves as `imgbuild executor`.
func TestExecutorArgv0(t *testing.T) {
	link := filepath.Join(t.TempDir(), "executor")
	if err := os.Symlink(binary, link); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(link, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, w := range []string{"--destination", "--context", "kaniko"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("executor --help lacks %q:\n%s", w, out)
		}
	}
}

// TestExecutorReproducible checks --reproducible: two builds on fresh state
// dirs, a second apart, give the same digest, written by --digest-file in
// kaniko's format (no newline).
func TestExecutorReproducible(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "same\n"})
	var digests []string
	for i := 0; i < 2; i++ {
		df := filepath.Join(t.TempDir(), "digest")
		r := e.executor(t, "", "--context", dir, "--no-push", "--reproducible", "--digest-file", df)
		if r.code != 0 {
			t.Fatal(r.stderr)
		}
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "sha256:") || strings.HasSuffix(string(b), "\n") {
			t.Errorf("digest file = %q, want sha256:… without a newline", b)
		}
		digests = append(digests, string(b))
		if i == 0 {
			time.Sleep(1100 * time.Millisecond)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("--reproducible builds differ: %s vs %s", digests[0], digests[1])
	}
}
