package builder

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPullRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		method     string
		fail       int // requests answered with status before a 200
		status     int
		retryAfter string
		attempts   int // 0: the default
		want       int // final status
		wantCalls  int32
		minElapsed time.Duration
	}{
		{name: "503 then OK", method: http.MethodGet, fail: 2, status: 503, want: 200, wantCalls: 3},
		{name: "429 honours Retry-After", method: http.MethodHead, fail: 1, status: 429, retryAfter: "1", want: 200, wantCalls: 2, minElapsed: time.Second},
		{name: "gives up after four attempts", method: http.MethodGet, fail: 10, status: 502, want: 502, wantCalls: 4},
		{name: "one retry", method: http.MethodGet, fail: 10, status: 503, attempts: 2, want: 503, wantCalls: 2},
		{name: "no retries", method: http.MethodGet, fail: 10, status: 503, attempts: 1, want: 503, wantCalls: 1},
		{name: "404 is not retried", method: http.MethodGet, fail: 10, status: 404, want: 404, wantCalls: 1},
		{name: "POST is not retried", method: http.MethodPost, fail: 10, status: 503, want: 503, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tc.fail {
					if tc.retryAfter != "" {
						w.Header().Set("Retry-After", tc.retryAfter)
					}
					w.WriteHeader(tc.status)
				}
			}))
			defer srv.Close()
			c := &http.Client{Transport: &pullRetry{next: http.DefaultTransport, backoff: time.Millisecond, attempts: tc.attempts}}
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, srv.URL, nil)
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || calls.Load() != tc.wantCalls {
				t.Errorf("got %d after %d calls, want %d after %d", resp.StatusCode, calls.Load(), tc.want, tc.wantCalls)
			}
			if time.Since(start) < tc.minElapsed {
				t.Errorf("took %v, want at least %v", time.Since(start), tc.minElapsed)
			}
		})
	}
}

// TestWithPullRetries checks that the option reaches the clients the
// registry hosts pull with.
func TestWithPullRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts      []Option
		wantCalls int32
	}{
		{nil, pullAttempts},
		{[]Option{WithPullRetries(1)}, 2},
		{[]Option{WithPullRetries(0)}, 1},
	} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.Header().Set("Retry-After", "0") // no waiting in the test
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		o := &options{}
		for _, opt := range tc.opts {
			if err := opt(o); err != nil {
				t.Fatal(err)
			}
		}
		host := strings.TrimPrefix(srv.URL, "http://")
		hs, err := registryHosts(o, nil)(host)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v2/", nil)
		resp, err := hs[len(hs)-1].Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if calls.Load() != tc.wantCalls {
			t.Errorf("%d options: %d requests, want %d", len(tc.opts), calls.Load(), tc.wantCalls)
		}
	}
	if err := WithPullRetries(-1)(&options{}); err == nil {
		t.Error("WithPullRetries(-1) accepted")
	}
}
