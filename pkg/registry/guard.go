package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imgbuild/imgbuild/internal/retry"
)

// DefaultMaxRetryAfter caps how long a registry's Retry-After can hold up a
// push.
const DefaultMaxRetryAfter = 30 * time.Second

// errBodySent is returned when a request whose body was already streamed is
// sent again: ggcr's bearer transport re-sends the same request once after a
// token refresh, and a streamed blob cannot be rewound. The upload is then
// restarted from the beginning with the new token (see retryable).
var errBodySent = errors.New("request body already sent; restarting the upload")

// DigestMismatchError is a registry answering with a Docker-Content-Digest
// other than the digest of what was sent.
type DigestMismatchError struct {
	Registry string
	Sent     string // digest of what we sent
	Served   string // digest the registry reported
}

// Error implements error.
func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("registry %s reports digest %s for content whose digest is %s", e.Registry, e.Served, e.Sent)
}

// LocationRefusedError is an upload Location that points at a link-local
// address, or at a private address of a host other than the registry.
type LocationRefusedError struct {
	Registry string
	Location string
}

// Error implements error.
func (e *LocationRefusedError) Error() string {
	return fmt.Sprintf("registry %s sent upload location %s, a link-local or private address of another host; refused", e.Registry, e.Location)
}

// retryable reports whether a failed registry step is worth another try:
// network resets and truncations, ggcr's temporary errors and the retried
// status codes. Refusals (401, 403, digest mismatches, refused locations)
// fail at once.
func retryable(err error) bool {
	if !isRetryable(err) {
		return false
	}
	logs.Warn.Printf("retrying: %v", err)
	return true
}

func isRetryable(err error) bool {
	var dm *DigestMismatchError
	var lr *LocationRefusedError
	if errors.As(err, &dm) || errors.As(err, &lr) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return retry.Status(te.StatusCode) || te.Temporary()
	}
	return errors.Is(err, errBodySent) || retry.Transient(err)
}

// guard sits below ggcr's auth and retry transports, so it sees every
// attempt. It honours Retry-After, checks Docker-Content-Digest against what
// was sent, refuses upload locations aimed at internal addresses, and stops
// streamed bodies from being replayed.
type guard struct {
	next          http.RoundTripper
	maxRetryAfter time.Duration

	mu   sync.Mutex
	sent map[*http.Request]bool // requests with a body, sent once
}

func newGuard(next http.RoundTripper, maxRetryAfter time.Duration) *guard {
	if maxRetryAfter <= 0 {
		maxRetryAfter = DefaultMaxRetryAfter
	}
	return &guard{next: next, maxRetryAfter: maxRetryAfter, sent: map[*http.Request]bool{}}
}

// RoundTrip implements http.RoundTripper.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	orig := req
	if req.Body != nil && req.Body != http.NoBody {
		g.mu.Lock()
		again := g.sent[req]
		g.sent[req] = true
		g.mu.Unlock()
		if again {
			g.forget(req)
			r, ok := rewind(req)
			if !ok {
				return nil, errBodySent
			}
			req = r
		}
	}
	resp, err := g.roundTrip(req)
	// Only a 401 is followed by ggcr re-sending the same request.
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		g.forget(orig)
	}
	return resp, err
}

func (g *guard) forget(req *http.Request) {
	g.mu.Lock()
	delete(g.sent, req)
	g.mu.Unlock()
}

func (g *guard) roundTrip(req *http.Request) (*http.Response, error) {
	want, err := sentDigest(req)
	if err != nil {
		return nil, err
	}

	resp, err := g.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if wait, ok := g.retryAfter(resp); ok {
		// Wait as told, then try once more if the request can be replayed;
		// ggcr's backoff covers the attempts after that.
		if err := retry.Sleep(req.Context(), wait); err != nil {
			return resp, nil
		}
		if replay, ok := rewind(req); ok {
			retry.Drain(resp)
			resp, err = g.next.RoundTrip(replay)
			if err != nil {
				return nil, err
			}
		}
	}
	if err := checkLocation(req, resp); err != nil {
		retry.Drain(resp)
		return nil, err
	}
	if want != "" && resp.StatusCode/100 == 2 {
		if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != want {
			retry.Drain(resp)
			return nil, &DigestMismatchError{Registry: req.URL.Host, Sent: want, Served: got}
		}
	}
	return resp, nil
}

var _ http.RoundTripper = (*guard)(nil)

// sentDigest is the digest of what req uploads, when it commits content: a
// blob upload's ?digest= or the sha256 of a manifest body.
func sentDigest(req *http.Request) (string, error) {
	if req.Method != http.MethodPut {
		return "", nil
	}
	switch {
	case strings.Contains(req.URL.Path, "/blobs/uploads/"):
		return req.URL.Query().Get("digest"), nil
	case strings.Contains(req.URL.Path, "/manifests/") && req.GetBody != nil:
		body, err := req.GetBody()
		if err != nil {
			return "", fmt.Errorf("reading manifest body: %w", err)
		}
		defer body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, body); err != nil {
			return "", fmt.Errorf("reading manifest body: %w", err)
		}
		return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
	}
	return "", nil
}

// retryAfter returns how long a 429 or 503 asks us to wait, capped.
func (g *guard) retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	return retry.After(resp, g.maxRetryAfter)
}

// rewind returns a copy of req that can be sent again.
func rewind(req *http.Request) (*http.Request, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Clone(req.Context()), true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	r := req.Clone(req.Context())
	r.Body = body
	return r, true
}

// checkLocation refuses an upload Location aimed at a link-local address, or
// at a loopback or private address of a host other than the registry: a
// registry must not steer our blob bytes (or our token) at internal
// services. ggcr checks the same for private literals; link-local is
// refused even on the registry's own host.
func checkLocation(req *http.Request, resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" || !strings.Contains(req.URL.Path, "/blobs/uploads/") {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("registry %s sent an invalid upload location: %w", req.URL.Host, err)
	}
	u = req.URL.ResolveReference(u)
	addr, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil // a name, as pre-signed storage URLs use
	}
	addr = addr.Unmap()
	if addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() {
		return &LocationRefusedError{Registry: req.URL.Host, Location: u.Redacted()}
	}
	if u.Hostname() != req.URL.Hostname() && (addr.IsPrivate() || addr.IsLoopback() || addr.IsUnspecified()) {
		return &LocationRefusedError{Registry: req.URL.Host, Location: u.Redacted()}
	}
	return nil
}
