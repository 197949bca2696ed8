package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// FaultProxy sits in front of a registry and misbehaves as a test scripts
// it. With tokens required, it also plays a bearer-token registry: /token
// issues tokens for one user, and every other request needs a live token.
type FaultProxy struct {
	// Host is the proxy's "127.0.0.1:PORT"; URL is "http://" + Host.
	Host, URL string

	upstream *httputil.ReverseProxy

	mu       sync.Mutex
	fault    func(w http.ResponseWriter, r *http.Request, n int) bool
	counts   map[string]int
	bytes    map[string]int64
	user     string
	password string // "" when no tokens are required
	live     map[string]bool
	issued   []string
}

// StartFaultProxy serves a proxy to the registry at upstream ("host:port",
// plain HTTP) until the test ends.
func StartFaultProxy(t testing.TB, upstream string) *FaultProxy {
	t.Helper()
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{upstream: httputil.NewSingleHostReverseProxy(u), counts: map[string]int{}, bytes: map[string]int64{}, live: map[string]bool{}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// SetFault installs f, which sees every request with its number among
// requests of the same [RequestKind] (from 1) and may answer it itself by
// returning true. nil removes the fault.
func (p *FaultProxy) SetFault(f func(w http.ResponseWriter, r *http.Request, n int) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// RequireTokens makes the proxy a token registry whose token endpoint
// accepts user and password (basic auth).
func (p *FaultProxy) RequireTokens(user, password string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user, p.password = user, password
}

// Count returns how many requests of kind ([RequestKind]) the proxy saw.
func (p *FaultProxy) Count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// Bytes returns how many request body bytes the proxy passed on for
// requests of kind ([RequestKind]): for "PATCH upload" and "PUT upload",
// the blob bytes uploaded.
func (p *FaultProxy) Bytes(kind string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes[kind]
}

// ExpireTokens invalidates every token issued so far.
func (p *FaultProxy) ExpireTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live = map[string]bool{}
}

// Tokens returns every token issued so far.
func (p *FaultProxy) Tokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// RequestKind names a request by its step in the distribution protocol:
// "POST upload-start", "PATCH upload", "PUT upload", "HEAD blob",
// "PUT manifest", "HEAD manifest", "token", ...
func RequestKind(r *http.Request) string {
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

// ReadHalf consumes about half of r's body.
func ReadHalf(r *http.Request) {
	n := r.ContentLength / 2
	if n <= 0 {
		n = 64 << 10
	}
	_, _ = io.CopyN(io.Discard, r.Body, n)
}

// ServeHTTP implements http.Handler.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := RequestKind(r)
	p.mu.Lock()
	p.counts[k]++
	n := p.counts[k]
	fault, tokens := p.fault, p.password != ""
	p.mu.Unlock()

	if tokens {
		if k == "token" {
			p.serveToken(w, r)
			return
		}
		p.mu.Lock()
		ok := p.live[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		p.mu.Unlock()
		if !ok {
			p.Challenge(w, r)
			return
		}
	}
	if fault != nil && fault(w, r, n) {
		return
	}
	if r.Body != nil {
		r.Body = &countingBody{ReadCloser: r.Body, p: p, kind: k}
	}
	p.upstream.ServeHTTP(w, r)
}

// countingBody adds what is read from a request body to the proxy's Bytes.
type countingBody struct {
	io.ReadCloser
	p    *FaultProxy
	kind string
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.mu.Lock()
	b.p.bytes[b.kind] += int64(n)
	b.p.mu.Unlock()
	return n, err
}

func (p *FaultProxy) serveToken(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok || user != p.user || pass != p.password {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "tok-" + hex.EncodeToString(b)
	p.live[tok] = true
	p.issued = append(p.issued, tok)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token":%q,"access_token":%q,"expires_in":300}`, tok, tok)
}

// Challenge answers r with 401 and a bearer challenge for its repository.
func (p *FaultProxy) Challenge(w http.ResponseWriter, r *http.Request) {
	scope := ""
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	for _, sep := range []string{"/blobs/", "/manifests/"} {
		if repo, _, ok := strings.Cut(path, sep); ok {
			scope = fmt.Sprintf(`,scope="repository:%s:push,pull"`, repo)
			break
		}
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"%s`, p.URL, scope))
	w.WriteHeader(http.StatusUnauthorized)
}
