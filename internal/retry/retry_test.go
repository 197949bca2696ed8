package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func TestAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"2", 2 * time.Second, true},
		{"3600", 30 * time.Second, true}, // capped
		{"-5", 0, true},
		{"soon", 0, false},
		{time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0, true},
	} {
		resp := &http.Response{Header: http.Header{}}
		if tc.header != "" {
			resp.Header.Set("Retry-After", tc.header)
		}
		got, ok := After(resp, 30*time.Second)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Retry-After %q: got %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTransientAndStatus(t *testing.T) {
	t.Parallel()
	if !Transient(fmt.Errorf("reading: %w", syscall.ECONNRESET)) || !Transient(io.ErrUnexpectedEOF) {
		t.Error("a reset or a truncated body is transient")
	}
	if Transient(errors.New("unauthorized")) {
		t.Error("an ordinary error is not transient")
	}
	if !Status(http.StatusTooManyRequests) || !Status(http.StatusBadGateway) || Status(http.StatusForbidden) {
		t.Error("429 and 502 are retried, 403 is not")
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	t.Parallel()
	cause := errors.New("cancelled by the test")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := Sleep(ctx, time.Hour); !errors.Is(err, cause) {
		t.Fatalf("Sleep returned %v, want the context's cause", err)
	}
}
