package registry

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
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

// newFaultProxy starts a real distribution registry and a fault-injecting
// proxy in front of it.
func newFaultProxy(t *testing.T) *testutil.FaultProxy {
	t.Helper()
	return testutil.StartFaultProxy(t, testutil.StartRegistry(t))
}

var fastRetry = remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}

type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: k.user, Password: k.pass}, nil
}

// pushThrough pushes a fresh random image to HOST/repo:v1 and returns the
// image's digest and what Push returned.
func pushThrough(t *testing.T, host string, kc authn.Keychain, repo string) (want, got string, err error) {
	t.Helper()
	img, err := random.Image(512<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	pusher, err := NewPusher(Options{Keychain: kc, RetryBackoff: &fastRetry, MaxRetryAfter: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, err := pusher.Push(t.Context(), img, mustRefs(t, host+"/"+repo+":v1"))
	if err != nil {
		return d.String(), "", err
	}
	return d.String(), h.String(), nil
}

// checkServed pulls HOST/repo:v1 through the proxy with its faults
// removed, and checks that it is complete and has digest want.
func checkServed(t *testing.T, p *testutil.FaultProxy, kc authn.Keychain, repo, want string) {
	t.Helper()
	p.SetFault(nil)
	ref := mustRefs(t, p.Host+"/"+repo+":v1")[0]
	img, err := remote.Image(ref, remote.WithAuthFromKeychain(kc))
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

type fault = func(w http.ResponseWriter, r *http.Request, n int) bool

func TestPushFaults(t *testing.T) {
	zero := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		name    string
		tokens  bool
		fault   func(p *testutil.FaultProxy) fault
		check   func(t *testing.T, p *testutil.FaultProxy, elapsed time.Duration)
		wantErr []string // substrings of the error; none means success
	}{{
		name: "503 twice on blob upload",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "PATCH upload" && n <= 2 {
					http.Error(w, "unavailable", http.StatusServiceUnavailable)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *testutil.FaultProxy, _ time.Duration) {
			if got := p.Count("PATCH upload"); got < 3 {
				t.Errorf("%d PATCH requests, want at least 3 (two refused, then retried)", got)
			}
		},
	}, {
		name: "429 with Retry-After on manifest PUT",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "PUT manifest" && n == 1 {
					w.Header().Set("Retry-After", "1")
					http.Error(w, "Too Many Requests (HAP429)", http.StatusTooManyRequests)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, _ *testutil.FaultProxy, elapsed time.Duration) {
			if elapsed < time.Second {
				t.Errorf("push took %v, want at least the 1s Retry-After", elapsed)
			}
		},
	}, {
		name: "503 twice on manifest PUT",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "PUT manifest" && n <= 2 {
					_, _ = io.Copy(io.Discard, r.Body)
					http.Error(w, "unavailable", http.StatusServiceUnavailable)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *testutil.FaultProxy, _ time.Duration) {
			if got := p.Count("PUT manifest"); got < 3 {
				t.Errorf("%d manifest PUTs, want at least 3 (two refused, then retried)", got)
			}
		},
	}, {
		name: "connection reset half-way through a blob upload",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "PATCH upload" && n == 1 {
					testutil.ReadHalf(r)
					if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
						conn.Close()
					}
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *testutil.FaultProxy, _ time.Duration) {
			if got := p.Count("PATCH upload"); got < 2 {
				t.Errorf("%d PATCH requests, want the reset one retried", got)
			}
		},
	}, {
		name:   "token expires mid-upload",
		tokens: true,
		fault: func(p *testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "PATCH upload" && n == 1 {
					testutil.ReadHalf(r)
					p.ExpireTokens()
					p.Challenge(w, r)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *testutil.FaultProxy, _ time.Duration) {
			if got := len(p.Tokens()); got < 2 {
				t.Errorf("%d tokens issued, want a refresh after the expiry", got)
			}
		},
	}, {
		name:   "403 insufficient scope fails at once",
		tokens: true,
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "POST upload-start" {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusForbidden)
					fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"insufficient_scope: push access denied"}]}`)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *testutil.FaultProxy, _ time.Duration) {
			// At most one POST per blob (two layers and a config), no retries.
			if got := p.Count("POST upload-start"); got > 3 {
				t.Errorf("%d upload attempts after a 403, want no retries", got)
			}
			if got := p.Count("token"); got > 2 {
				t.Errorf("%d token requests, want at most 2", got)
			}
		},
		wantErr: []string{"authenticating to 127.0.0.1", "repository faults/app", `scope "repository:faults/app:push,pull"`, "DENIED"},
	}, {
		name: "wrong Docker-Content-Digest on manifest PUT",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "PUT manifest" {
					w.Header().Set("Docker-Content-Digest", zero)
					w.WriteHeader(http.StatusCreated)
					return true
				}
				return false
			}
		},
		wantErr: []string{"pushing manifest", "reports digest " + zero + " for content whose digest is sha256:"},
	}, {
		name: "tag read back with another digest",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "HEAD manifest" && strings.HasSuffix(r.URL.Path, "/manifests/v1") {
					w.Header().Set("Docker-Content-Digest", zero)
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					w.Header().Set("Content-Length", "100")
					w.WriteHeader(http.StatusOK)
					return true
				}
				return false
			}
		},
		wantErr: []string{"reading back", "the registry serves " + zero + ", but imgbuild pushed sha256:"},
	}, {
		name: "upload Location at a link-local address",
		fault: func(*testutil.FaultProxy) fault {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if testutil.RequestKind(r) == "POST upload-start" {
					w.Header().Set("Location", "http://169.254.169.254/latest/meta-data/upload")
					w.WriteHeader(http.StatusAccepted)
					return true
				}
				return false
			}
		},
		check: func(t *testing.T, p *testutil.FaultProxy, _ time.Duration) {
			if got := p.Count("POST upload-start"); got > 3 {
				t.Errorf("%d upload attempts after a refused Location, want no retries", got)
			}
		},
		wantErr: []string{"pushing blob", "169.254.169.254", "refused"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newFaultProxy(t)
			kc := authn.Keychain(authn.NewMultiKeychain())
			if tc.tokens {
				pass := "pw-" + strings.ReplaceAll(tc.name, " ", "-")
				p.RequireTokens("alice", pass)
				kc = staticKeychain{"alice", pass}
			}
			p.SetFault(tc.fault(p))
			start := time.Now()
			want, got, err := pushThrough(t, p.Host, kc, "faults/app")
			elapsed := time.Since(start)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("push failed: %v", err)
				}
				if got != want {
					t.Errorf("Push returned %s, want %s", got, want)
				}
				checkServed(t, p, kc, "faults/app", want)
			} else {
				if err == nil {
					t.Fatal("push succeeded, want an error")
				}
				for _, s := range append(tc.wantErr, "127.0.0.1") {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, p, elapsed)
			}
		})
	}
}

// TestPushLogsNoCredentials pushes with a password to a token registry
// while go-containerregistry logs everything, and greps the log for the
// password, its basic-auth encoding and the tokens.
func TestPushLogsNoCredentials(t *testing.T) {
	p := newFaultProxy(t)
	pass := fmt.Sprintf("hunter2-%d", time.Now().UnixNano())
	p.RequireTokens("alice", pass)
	var buf syncBuf
	restore := captureGGCRLogs(&buf)
	defer restore()
	want, got, err := pushThrough(t, p.Host, staticKeychain{"alice", pass}, "creds/app")
	if err != nil || got != want {
		t.Fatalf("push: %v (got %s, want %s)", err, got, want)
	}
	log := buf.String()
	if !strings.Contains(log, "/v2/") {
		t.Fatalf("debug log captured nothing; the test is broken:\n%.2000s", log)
	}
	secrets := append([]string{pass, "YWxpY2U6"}, p.Tokens()...)
	if len(secrets) < 3 {
		t.Fatal("no token was issued; the test is broken")
	}
	for _, secret := range secrets {
		sc := bufio.NewScanner(strings.NewReader(log))
		for sc.Scan() {
			if strings.Contains(sc.Text(), secret) {
				t.Errorf("credential %.8s… in log line: %.300s", secret, sc.Text())
				break
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

// captureGGCRLogs points go-containerregistry's debug, warning and progress
// logs at w until the returned function is called.
func captureGGCRLogs(w io.Writer) func() {
	d, wa, pr := logs.Debug.Writer(), logs.Warn.Writer(), logs.Progress.Writer()
	logs.Debug.SetOutput(w)
	logs.Warn.SetOutput(w)
	logs.Progress.SetOutput(w)
	return func() {
		logs.Debug.SetOutput(d)
		logs.Warn.SetOutput(wa)
		logs.Progress.SetOutput(pr)
	}
}
