package registry

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// faultProxy sits in front of a real distribution registry and misbehaves
// as a test scripts it. With tokens on, it also plays a bearer-token
// registry: /token issues tokens and every /v2/ request needs a live one.
type faultProxy struct {
	t        *testing.T
	upstream *httputil.ReverseProxy
	srv      *httptest.Server
	host     string

	mu sync.Mutex
	// fault, if set, may answer a request itself (returning true).
	fault    func(w http.ResponseWriter, r *http.Request, n int) bool
	counts   map[string]int // "METHOD kind" → requests seen
	tokens   bool
	live     map[string]bool // tokens currently valid
	issued   int
	password string
}

func newFaultProxy(t *testing.T) *faultProxy {
	t.Helper()
	addr := testutil.StartRegistry(t)
	u, _ := url.Parse("http://" + addr)
	p := &faultProxy{t: t, upstream: httputil.NewSingleHostReverseProxy(u), counts: map[string]int{}, live: map[string]bool{}}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	p.host = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

// kind names a request by what it does in the push protocol.
func kind(r *http.Request) string {
	switch {
	case strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
		return r.Method + " upload-start"
	case strings.Contains(r.URL.Path, "/blobs/uploads/"):
		return r.Method + " upload"
	case strings.Contains(r.URL.Path, "/blobs/"):
		return r.Method + " blob"
	case strings.Contains(r.URL.Path, "/manifests/"):
		return r.Method + " manifest"
	case r.URL.Path == "/token":
		return "token"
	}
	return r.Method + " " + r.URL.Path
}

func (p *faultProxy) count(k string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[k]
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := kind(r)
	p.mu.Lock()
	p.counts[k]++
	n := p.counts[k]
	fault, tokens := p.fault, p.tokens
	p.mu.Unlock()

	if tokens {
		if r.URL.Path == "/token" {
			user, pass, ok := r.BasicAuth()
			if !ok || user != "alice" || pass != p.password {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			p.mu.Lock()
			p.issued++
			tok := fmt.Sprintf("tok-%d-secret", p.issued)
			p.live[tok] = true
			p.mu.Unlock()
			fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, tok)
			return
		}
		p.mu.Lock()
		ok := p.live[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		p.mu.Unlock()
		if !ok {
			p.challenge(w, r)
			return
		}
	}
	if fault != nil && fault(w, r, n) {
		return
	}
	p.upstream.ServeHTTP(w, r)
}

func (p *faultProxy) challenge(w http.ResponseWriter, r *http.Request) {
	scope := ""
	if parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/", 2); len(parts) == 2 {
		scope = fmt.Sprintf(`,scope="repository:%s:push,pull"`, parts[0])
	} else if parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/", 2); len(parts) == 2 {
		scope = fmt.Sprintf(`,scope="repository:%s:push,pull"`, parts[0])
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"%s`, p.srv.URL, scope))
	w.WriteHeader(http.StatusUnauthorized)
}

// expireTokens invalidates every token issued so far.
func (p *faultProxy) expireTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live = map[string]bool{}
}

// readHalf consumes about half of a request body of the given size.
func readHalf(r *http.Request) {
	n := r.ContentLength / 2
	if n <= 0 {
		n = 64 << 10
	}
	_, _ = io.CopyN(io.Discard, r.Body, n)
}

var fastRetry = remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}

// pushThrough pushes a fresh random image through the proxy and returns
// the image's digest and the push's result.
func pushThrough(t *testing.T, p *faultProxy, kc authn.Keychain, repo string) (string, string, error) {
	t.Helper()
	img, err := random.Image(512<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if kc == nil {
		kc = authn.NewMultiKeychain()
	}
	pusher, err := NewPusher(Options{Keychain: kc, RetryBackoff: &fastRetry, MaxRetryAfter: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got, err := pusher.Push(t.Context(), img, mustRefs(t, p.host+"/"+repo+":v1"))
	if err != nil {
		return want.String(), "", err
	}
	return want.String(), got.String(), nil
}

// checkServed pulls repo:v1 straight from the registry behind the proxy
// (no faults) and checks that it is complete and has digest want.
func checkServed(t *testing.T, p *faultProxy, repo, want string) {
	t.Helper()
	p.mu.Lock()
	p.fault = nil
	p.mu.Unlock()
	ref := mustRefs(t, p.host+"/"+repo+":v1")[0]
	img, err := remote.Image(ref, remote.WithAuthFromKeychain(keychainFor(p)))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validating %s: %v", ref, err)
	}
	if d, _ := img.Digest(); d.String() != want {
		t.Errorf("registry serves %s, want %s", d, want)
	}
}

type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: k.user, Password: k.pass}, nil
}

func keychainFor(p *faultProxy) authn.Keychain {
	if !p.tokens {
		return authn.NewMultiKeychain()
	}
	return staticKeychain{"alice", p.password}
}

func TestPushFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tokens  bool
		fault   func(p *faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool
		check   func(t *testing.T, p *faultProxy, elapsed time.Duration)
		wantErr []string // substrings of the error; none means success
	}{{
		name: "503 twice on blob upload",
		fault: func(*faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "PATCH upload" && n <= 2 {
					http.Error(w, "unavailable", http.StatusServiceUnavailable)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *faultProxy, _ time.Duration) {
			if got := p.count("PATCH upload"); got < 3 {
				t.Errorf("%d PATCH requests, want at least 3 (two refused, then retried)", got)
			}
		},
	}, {
		name: "429 with Retry-After on manifest PUT",
		fault: func(*faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "PUT manifest" && n == 1 {
					w.Header().Set("Retry-After", "1")
					http.Error(w, "Too Many Requests (HAP429)", http.StatusTooManyRequests)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, _ *faultProxy, elapsed time.Duration) {
			if elapsed < time.Second {
				t.Errorf("push took %v, want at least the 1s Retry-After", elapsed)
			}
		},
	}, {
		name: "connection reset half-way through a blob upload",
		fault: func(*faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "PATCH upload" && n == 1 {
					readHalf(r)
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return true
				}
				return false
			}
		},
	}, {
		name:   "token expires mid-upload",
		tokens: true,
		fault: func(p *faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "PATCH upload" && n == 1 {
					readHalf(r)
					p.expireTokens()
					p.challenge(w, r)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *faultProxy, _ time.Duration) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.issued < 2 {
				t.Errorf("%d tokens issued, want a refresh after the expiry", p.issued)
			}
		},
	}, {
		name:   "403 insufficient scope fails at once",
		tokens: true,
		fault: func(*faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "POST upload-start" {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusForbidden)
					fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"insufficient_scope: push access denied"}]}`)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *faultProxy, _ time.Duration) {
			// One POST per blob (two layers and a config), no retries.
			if got := p.count("POST upload-start"); got > 3 {
				t.Errorf("%d upload attempts after a 403, want no retries", got)
			}
			if got := p.count("token"); got > 2 {
				t.Errorf("%d token requests, want at most 2", got)
			}
		},
		wantErr: []string{"authenticating to 127.0.0.1", "repository faults/app", `scope "repository:faults/app:push,pull"`, "DENIED"},
	}, {
		name: "wrong Docker-Content-Digest on manifest PUT",
		fault: func(*faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "PUT manifest" {
					w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
					w.WriteHeader(http.StatusCreated)
					return true
				}
				return false
			}
		},
		wantErr: []string{"pushing manifest", "reports digest sha256:" + strings.Repeat("0", 64) + " for content whose digest is sha256:"},
	}, {
		name: "upload Location at a link-local address",
		fault: func(*faultProxy) func(w http.ResponseWriter, r *http.Request, n int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if kind(r) == "POST upload-start" {
					w.Header().Set("Location", "http://169.254.169.254/latest/meta-data/upload")
					w.WriteHeader(http.StatusAccepted)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *faultProxy, _ time.Duration) {
			if got := p.count("POST upload-start"); got > 3 {
				t.Errorf("%d upload attempts after a refused Location, want no retries", got)
			}
		},
		wantErr: []string{"pushing blob", "169.254.169.254", "refused"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newFaultProxy(t)
			p.tokens = tc.tokens
			p.password = "pw-" + strings.ReplaceAll(tc.name, " ", "-")
			p.fault = tc.fault(p)
			start := time.Now()
			want, got, err := pushThrough(t, p, keychainFor(p), "faults/app")
			elapsed := time.Since(start)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("push failed: %v", err)
				}
				if got != want {
					t.Errorf("Push returned %s, want %s", got, want)
				}
				checkServed(t, p, "faults/app", want)
			} else {
				if err == nil {
					t.Fatal("push succeeded, want an error")
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if !strings.Contains(err.Error(), p.host) && !strings.Contains(err.Error(), "127.0.0.1") {
					t.Errorf("error %q does not name the registry", err)
				}
			}
			if tc.check != nil {
				tc.check(t, p, elapsed)
			}
		})
	}
}

// TestPushLogsNoCredentials pushes with basic credentials to a token
// registry while go-containerregistry logs everything, and greps the log
// for the password and the tokens.
func TestPushLogsNoCredentials(t *testing.T) {
	p := newFaultProxy(t)
	p.tokens = true
	p.password = "hunter2-" + fmt.Sprint(time.Now().UnixNano())
	var buf syncBuf
	restore := captureGGCRLogs(&buf)
	defer restore()
	want, got, err := pushThrough(t, p, keychainFor(p), "creds/app")
	if err != nil || got != want {
		t.Fatalf("push: %v (got %s, want %s)", err, got, want)
	}
	log := buf.String()
	if !strings.Contains(log, "/v2/") {
		t.Fatalf("debug log captured nothing; the test is broken:\n%.2000s", log)
	}
	for _, secret := range []string{p.password, "-secret", "YWxpY2U6"} {
		if strings.Contains(log, secret) {
			sc := bufio.NewScanner(strings.NewReader(log))
			for sc.Scan() {
				if strings.Contains(sc.Text(), secret) {
					t.Errorf("credential %q in log line: %.300s", secret, sc.Text())
					break
				}
			}
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var ggcrLogsMu sync.Mutex

// captureGGCRLogs points go-containerregistry's debug, warning and progress
// logs at w until the returned function is called.
func captureGGCRLogs(w io.Writer) func() {
	ggcrLogsMu.Lock()
	d, wa, pr := logs.Debug.Writer(), logs.Warn.Writer(), logs.Progress.Writer()
	logs.Debug.SetOutput(w)
	logs.Warn.SetOutput(w)
	logs.Progress.SetOutput(w)
	return func() {
		logs.Debug.SetOutput(d)
		logs.Warn.SetOutput(wa)
		logs.Progress.SetOutput(pr)
		ggcrLogsMu.Unlock()
	}
}
