// Package retry holds what imgbuild's pull and push paths agree on about a
// failed registry request: which answers are worth another try, how long a
// registry may ask us to wait, and a wait that ends with the context.
package retry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// StatusCodes are the responses retried with backoff: timeouts, rate limits
// and server errors (go-containerregistry's defaults, spelled out so that
// they do not change under us).
var StatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
	499, 522,
}

// Status reports whether a response with this status is worth another try.
func Status(code int) bool { return slices.Contains(StatusCodes, code) }

// Transient reports whether err is the connection failing under a request
// (reset, closed, cut short), which another try may not meet.
func Transient(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// After reads a response's Retry-After, in seconds or as an HTTP date,
// capped at limit. It reports false when there is none.
func After(resp *http.Response, limit time.Duration) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	} else {
		return 0, false
	}
	return min(max(d, 0), limit), true
}

// Sleep waits for d or until ctx ends, returning the context's cause then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Drain reads what is left of a response body (up to 64 KiB, so that the
// connection can be reused) and closes it.
func Drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
