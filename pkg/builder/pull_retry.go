package builder

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/imgbuild/imgbuild/pkg/registry"
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
	next    http.RoundTripper
	backoff time.Duration // first wait; doubles per attempt
}

// RoundTrip implements http.RoundTripper.
func (p *pullRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return p.next.RoundTrip(req)
	}
	wait := p.backoff
	for attempt := 1; ; attempt++ {
		resp, err := p.next.RoundTrip(req)
		if attempt == pullAttempts || !retryPull(resp, err) {
			return resp, err
		}
		d := wait
		if resp != nil {
			if ra, ok := registry.RetryAfter(resp, maxPullRetryAfter); ok {
				d = ra
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if err := sleep(req.Context(), d); err != nil {
			return nil, err
		}
		wait *= 2
	}
}

func retryPull(resp *http.Response, err error) bool {
	if err != nil {
		return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
			errors.Is(err, net.ErrClosed)
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
