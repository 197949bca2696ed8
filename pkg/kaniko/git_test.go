package kaniko

import (
	"encoding/base64"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// gitFixture is a git server for the clone tests: host git's http-backend
// behind net/http/cgi, refusing any request without the token as basic
// auth user name (kaniko's GIT_TOKEN convention).
type gitFixture struct {
	host    string // 127.0.0.1:PORT
	tlsHost string // the same over HTTPS, with a certificate no one trusts
	token   string
	first   string // main's first commit
	pull    string // refs/pull/1/head, on no branch
}

func newGitFixture(t *testing.T) *gitFixture {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	testutil.Require(t, err == nil, "git is not installed (hack/install-deps.sh installs it)")
	out, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	_, err = os.Stat(backend)
	testutil.Require(t, err == nil, "no git-http-backend at %s", backend)

	git := func(dir string, args ...string) string {
		t.Helper()
		c := exec.Command(gitBin, args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t",
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	write := func(dir, name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	f := &gitFixture{token: "ghp_" + strings.Repeat("s3cr3t", 6)}

	lib := t.TempDir()
	git(lib, "init", "-q", "-b", "main")
	write(lib, "lib.txt", "library\n")
	git(lib, "add", ".")
	git(lib, "commit", "-q", "-m", "lib")
	libHead := git(lib, "rev-parse", "HEAD")
	git(root, "clone", "-q", "--bare", lib, "lib.git")

	work := t.TempDir()
	git(work, "init", "-q", "-b", "main")
	write(work, "app.txt", "first commit\n")
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "first")
	f.first = git(work, "rev-parse", "HEAD")
	write(work, "app.txt", "second commit\n")
	// A submodule recorded by hand: no clone of it is needed here, and its
	// relative URL resolves against the context's own.
	write(work, ".gitmodules", "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n")
	git(work, "add", ".")
	git(work, "update-index", "--add", "--cacheinfo", "160000,"+libHead+",lib")
	git(work, "commit", "-q", "-m", "second")
	git(work, "checkout", "-q", "-b", "other", f.first)
	write(work, "other.txt", "other branch\n")
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "other")
	git(work, "checkout", "-q", "--detach", f.first)
	write(work, "pr.txt", "pull request\n")
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "pr")
	f.pull = git(work, "rev-parse", "HEAD")
	git(work, "checkout", "-q", "main")
	git(root, "clone", "-q", "--bare", work, "app.git")
	git(filepath.Join(root, "app.git"), "update-ref", "refs/pull/1/head", f.pull)

	backendHandler := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}, Stderr: io.Discard}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, _, ok := r.BasicAuth(); !ok || user != f.token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		backendHandler.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f.host = strings.TrimPrefix(srv.URL, "http://")
	tlsSrv := httptest.NewUnstartedServer(h)
	// The refused handshake is the point of a test, not news.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	f.tlsHost = strings.TrimPrefix(tlsSrv.URL, "https://")
	return f
}

// env is GIT_PULL_METHOD=http plus GIT_TOKEN=token (none when "").
func (f *gitFixture) env(token string) func(string) string {
	return func(k string) string {
		switch k {
		case "GIT_PULL_METHOD":
			return "http"
		case "GIT_TOKEN":
			return token
		}
		return ""
	}
}

// noSecretIn fails t if any file under dir, .git included, holds the token
// or the basic auth header made of it.
func noSecretIn(t *testing.T, dir, token string) {
	t.Helper()
	forms := []string{token, base64.StdEncoding.EncodeToString([]byte(token + ":"))}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		for _, s := range forms {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds the git token", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "config")); err != nil || n < 5 {
		t.Errorf("scanned %d files, .git/config: %v: not a clone", n, err)
	}
}

// TestGitContextClone clones contexts from a token-protected smart HTTP
// server with go-git and checks the checked-out files, that the token is
// in no file of the clone, and that failures name the URL and ref, leave
// no directory behind and never show the token.
func TestGitContextClone(t *testing.T) {
	f := newGitFixture(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	repo := "git://" + f.host + "/app.git"

	for _, tc := range []struct {
		name string
		spec string
		git  []string
		want map[string]string // path -> content; "" = must not exist
	}{
		{"default branch", repo, nil, map[string]string{"app.txt": "second commit\n", "other.txt": "", "lib/lib.txt": ""}},
		{"branch ref", repo + "#refs/heads/other", nil, map[string]string{"app.txt": "first commit\n", "other.txt": "other branch\n"}},
		{"short branch name", repo + "#other", nil, map[string]string{"other.txt": "other branch\n"}},
		{"commit of a branch", repo + "#refs/heads/main#" + f.first, nil, map[string]string{"app.txt": "first commit\n", ".gitmodules": ""}},
		{"commit as ref", repo + "#" + f.first, nil, map[string]string{"app.txt": "first commit\n"}},
		{"abbreviated commit", repo + "#refs/heads/main#" + f.first[:10], nil, map[string]string{"app.txt": "first commit\n"}},
		{"pull request ref", repo + "#refs/pull/1/head", nil, map[string]string{"pr.txt": "pull request\n", "other.txt": ""}},
		{"pull request commit", repo + "#refs/pull/1/head#" + f.pull, nil, map[string]string{"pr.txt": "pull request\n"}},
		{"branch option", repo, []string{"branch=other,single-branch=true"}, map[string]string{"other.txt": "other branch\n"}},
		{"submodules", repo, []string{"recurse-submodules=true"}, map[string]string{"lib/lib.txt": "library\n", "app.txt": "second commit\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, cleanup, err := FetchContext(t.Context(), tc.spec, ContextOptions{Getenv: f.env(f.token), Git: tc.git})
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range tc.want {
				b, err := os.ReadFile(filepath.Join(dir, p))
				switch {
				case want == "" && err == nil:
					t.Errorf("%s exists: %q", p, b)
				case want != "" && string(b) != want:
					t.Errorf("%s = %q, %v; want %q", p, b, err, want)
				}
			}
			noSecretIn(t, dir, f.token)
			cleanup()
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("cleanup left %s: %v", dir, err)
			}
		})
	}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadHost := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name, spec, token string
		git               []string
		want              []string // all in the error
	}{
		{"wrong token", repo, "ghp_wrongtoken0123456789", nil, []string{"http://" + f.host + "/app.git", "refused the credentials from GIT_TOKEN"}},
		{"no token", repo, "", nil, []string{"http://" + f.host + "/app.git", "authentication required", "GIT_TOKEN"}},
		{"unknown branch", repo + "#refs/heads/nope", f.token, nil, []string{"http://" + f.host + "/app.git", `no ref "refs/heads/nope"`}},
		{"unknown branch option", repo, f.token, []string{"branch=nope"}, []string{"http://" + f.host + "/app.git", "branch=nope", `no branch or tag "nope"`}},
		{"unknown commit", repo + "#refs/heads/main#0123456789abcdef0123456789abcdef01234567", f.token, nil, []string{"http://" + f.host + "/app.git", "no commit 0123456789abcdef0123456789abcdef01234567"}},
		{"unknown repository", "git://" + f.host + "/nope.git", f.token, nil, []string{"http://" + f.host + "/nope.git", "repository not found"}},
		{"unreachable host", "git://" + deadHost + "/app.git#refs/heads/main", f.token, nil, []string{"http://" + deadHost + "/app.git", "refused"}},
		{"unknown option", repo, f.token, []string{"depth=1"}, []string{"depth=1", "unknown option"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, cleanup, err := FetchContext(t.Context(), tc.spec, ContextOptions{Getenv: f.env(tc.token), Git: tc.git})
			cleanup()
			if err == nil {
				t.Fatalf("cloned into %s", dir)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, secret := range []string{f.token, tc.token} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds the token", err)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left in TMPDIR: %v", left)
			}
		})
	}
}

// TestGitContextInsecureSkipTLS: HTTPS is the default, its certificate is
// checked, and insecure-skip-tls=true skips the check.
func TestGitContextInsecureSkipTLS(t *testing.T) {
	f := newGitFixture(t)
	spec := "git://" + f.tlsHost + "/app.git"
	getenv := func(k string) string { return map[string]string{"GIT_TOKEN": f.token}[k] }
	_, cleanup, err := FetchContext(t.Context(), spec, ContextOptions{Getenv: getenv})
	cleanup()
	if err == nil || !strings.Contains(err.Error(), "https://"+f.tlsHost+"/app.git") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("an untrusted certificate gave %v, want an error naming the URL and the certificate", err)
	}
	dir, cleanup, err := FetchContext(t.Context(), spec, ContextOptions{Getenv: getenv, Git: []string{"insecure-skip-tls=true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if b, err := os.ReadFile(filepath.Join(dir, "app.txt")); string(b) != "second commit\n" {
		t.Errorf("app.txt = %q, %v", b, err)
	}
	noSecretIn(t, dir, f.token)
}

// TestGitContextURLCredentials: credentials written in the context URL
// are taken out of it, so go-git never writes them to .git/config.
func TestGitContextURLCredentials(t *testing.T) {
	f := newGitFixture(t)
	spec := "git://" + f.token + ":@" + f.host + "/app.git#refs/heads/other"
	dir, cleanup, err := FetchContext(t.Context(), spec, ContextOptions{Getenv: f.env("")})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if b, err := os.ReadFile(filepath.Join(dir, "other.txt")); string(b) != "other branch\n" {
		t.Errorf("other.txt = %q, %v", b, err)
	}
	noSecretIn(t, dir, f.token)
}
