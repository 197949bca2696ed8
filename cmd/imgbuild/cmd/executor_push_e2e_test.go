package cmd

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// TestExecutorPushPermissionCheck pushes to a repository whose registry
// refuses uploads, as kaniko's check finds before the build: the build fails
// before any pull, naming the reference and the registry's answer; with
// --skip-push-permission-check it builds and fails at the push.
func TestExecutorPushPermissionCheck(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := testutil.StartFaultProxy(t, e.registry)
	p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v2/e2e/read-only/") {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`)
		return true
	})
	base := strings.Replace(e.base, e.registry, p.Host, 1)
	dir := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "checked\n"})
	dest := p.Host + "/e2e/read-only:v1"

	r := e.executor(t, "", "--context", dir, "--build-arg", "BASE="+base, "--destination", p.Host+"/e2e/writable:v1", "--destination", dest)
	if r.code == 0 {
		t.Fatal("a build bound for a read-only repository succeeded")
	}
	for _, want := range []string{"checking push permission for " + dest, "DENIED: requested access to the resource is denied", "--skip-push-permission-check"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if n := p.Count("GET manifest") + p.Count("HEAD manifest") + p.Count("GET blob"); n != 0 {
		t.Errorf("%d pull requests before the refusal; want none", n)
	}
	// The writable destination was asked first, and its probe given back.
	if n := p.Count("POST upload-start"); n != 2 {
		t.Errorf("%d upload starts, want 2 (one per repository)", n)
	}

	r = e.executor(t, "", "--context", dir, "--build-arg", "BASE="+base, "--destination", dest, "--skip-push-permission-check")
	if r.code == 0 {
		t.Fatal("the push to a read-only repository succeeded")
	}
	if strings.Contains(r.stderr, "checking push permission") || !strings.Contains(r.stderr, "DENIED") {
		t.Errorf("want the push's own refusal, not the check's:\n%s", r.stderr)
	}
	if p.Count("GET manifest")+p.Count("HEAD manifest") == 0 {
		t.Error("with the check skipped, the base image was not pulled")
	}
}

// TestExecutorImmutableTag pushes a tag the registry refuses to move, with
// ECR's answer: a failure, or with --push-ignore-immutable-tag-errors a
// warning, the other tags pushed and the digest files written.
func TestExecutorImmutableTag(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := testutil.StartFaultProxy(t, e.registry)
	p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != http.MethodPut || r.URL.Path != "/v2/e2e/immutable/manifests/v1" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists in the 'e2e/immutable' repository and cannot be overwritten because the repository is immutable."}]}`)
		return true
	})
	dir := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "immutable\n"})
	v1, latest := p.Host+"/e2e/immutable:v1", p.Host+"/e2e/immutable:latest"

	r := e.executor(t, "", "--context", dir, "-d", v1, "-d", latest)
	if r.code == 0 || !strings.Contains(r.stderr, "cannot be overwritten because the repository is immutable") {
		t.Fatalf("exit %d; want the refusal:\n%s", r.code, r.stderr)
	}

	nd := filepath.Join(t.TempDir(), "name-digest")
	r = e.executor(t, "", "--context", dir, "-d", v1, "-d", latest, "--push-ignore-immutable-tag-errors", "--image-name-with-digest-file", nd)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	digest := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, v1+": the registry keeps the tag as it is (immutable tag") {
		t.Errorf("no warning naming the immutable tag:\n%s", r.stderr)
	}
	if got := files(t, pull(t, latest))["app.txt"]; got != "immutable\n" {
		t.Errorf("%s: app.txt = %q", latest, got)
	}
	b, err := os.ReadFile(nd)
	if err != nil {
		t.Fatal(err)
	}
	repo := p.Host + "/e2e/immutable"
	if want := repo + "@" + digest + "\n" + repo + "@" + digest + "\n"; string(b) != want {
		t.Errorf("name-digest file = %q, want %q", b, want)
	}
}

// TestExecutorNoPushCache builds with --cache and --no-push-cache: nothing
// goes to the cache repository.
func TestExecutorNoPushCache(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": executorDockerfile, "app.txt": "no push cache\n"})
	dest := e.registry + "/e2e/no-push-cache:v1"
	r := e.executor(t, "", "--context", dir, "-d", dest, "--cache", "--no-push-cache")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	cache, err := name.ParseReference(e.registry + "/e2e/no-push-cache/cache:" + cacheTag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(cache); err == nil {
		t.Errorf("%s exists after --no-push-cache", cache)
	}
	if got := files(t, pull(t, dest))["app.txt"]; got != "no push cache\n" {
		t.Errorf("app.txt = %q", got)
	}
}

// TestExecutorDockerfileURL builds with --dockerfile https://…, downloaded
// as kaniko does, with the context's files.
func TestExecutorDockerfileURL(t *testing.T) {
	t.Parallel()
	e := setup(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, executorDockerfile)
	}))
	defer srv.Close()
	dir := writeContext(t, map[string]string{"app.txt": "remote dockerfile\n"})
	dest := e.registry + "/e2e/dockerfile-url:v1"
	r := e.executor(t, "", "--context", dir, "--dockerfile", srv.URL+"/Dockerfile", "-d", dest)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	fs := files(t, pull(t, dest))
	if fs["app.txt"] != "remote dockerfile\n" || fs["built.txt"] != "built by executor\n" {
		t.Errorf("app.txt=%q built.txt=%q", fs["app.txt"], fs["built.txt"])
	}
}
