package builder

import (
	"net/http"
	"time"

	"github.com/imgbuild/imgbuild/internal/retry"
)

// Pull retries: containerd's resolver, which BuildKit pulls with, does not
// retry a rate-limited or failing registry request and ignores Retry-After.
const (
	pullAttempts      = 4
	pullBackoff       = time.Second
	maxPullRetryAfter = 30 * time.Second
)

// pullRetry retries idempotent registry requests (GET, HEAD) that failed
// with 408, 429 or a 5xx, or with a connection reset, waiting as long as
// Retry-After says (capped) or with exponential backoff.
type pullRetry struct {
	next     http.RoundTripper
	backoff  time.Duration // first wait; doubles per attempt
	attempts int           // in all; 0 is pullAttempts
}

// RoundTrip implements http.RoundTripper.
func (p *pullRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return p.next.RoundTrip(req)
	}
	wait := p.backoff
	attempts := p.attempts
	if attempts <= 0 {
		attempts = pullAttempts
	}
	for attempt := 1; ; attempt++ {
		resp, err := p.next.RoundTrip(req)
		if attempt >= attempts || !retryPull(resp, err) {
			return resp, err
		}
		d := wait
		if resp != nil {
			if ra, ok := retry.After(resp, maxPullRetryAfter); ok {
				d = ra
			}
			retry.Drain(resp)
		}
		if err := retry.Sleep(req.Context(), d); err != nil {
			return nil, err
		}
		wait *= 2
	}
}

func retryPull(resp *http.Response, err error) bool {
	if err != nil {
		return retry.Transient(err)
	}
	return retry.Status(resp.StatusCode)
}
