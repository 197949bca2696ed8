package registry

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// progressTracker derives push progress from the HTTP requests themselves:
// ggcr's own progress channel is fixed for the life of a remote.Pusher and
// counts bytes only, while we want per-reference blob counts. It sits below
// ggcr's auth and retry transports, so it sees every attempt.
type progressTracker struct {
	next http.RoundTripper

	mu    sync.Mutex
	w     io.Writer
	repos map[string]*repoProgress // "host/repo" -> push in progress
}

type repoProgress struct {
	label string
	total int
	done  map[string]bool // blob digests already present in the repository
	bytes atomic.Int64
}

func newProgressTracker(w io.Writer, next http.RoundTripper) *progressTracker {
	return &progressTracker{next: next, w: w, repos: map[string]*repoProgress{}}
}

// start tracks a push of blobs to repo, shown as label, until the returned
// function is called.
func (t *progressTracker) start(repo name.Repository, label string, blobs []v1.Layer) func() {
	key := repo.RegistryStr() + "/" + repo.RepositoryStr()
	rp := &repoProgress{label: label, total: len(blobs), done: map[string]bool{}}
	t.mu.Lock()
	t.repos[key] = rp
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.repos[key] == rp {
			delete(t.repos, key)
		}
	}
}

func (t *progressTracker) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format, args...)
}

// RoundTrip implements http.RoundTripper.
func (t *progressTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	repo, rest, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/blobs/")
	if !ok {
		return t.next.RoundTrip(req)
	}
	t.mu.Lock()
	rp := t.repos[req.URL.Host+"/"+repo]
	t.mu.Unlock()
	if rp == nil {
		return t.next.RoundTrip(req)
	}
	if req.Body != nil && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
		req = req.Clone(req.Context())
		req.Body = &countingReader{ReadCloser: req.Body, n: &rp.bytes}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	// A blob is done when it exists (HEAD 200), was mounted (POST 201) or
	// its upload was committed (PUT 201).
	var digest string
	switch {
	case req.Method == http.MethodHead && resp.StatusCode == http.StatusOK:
		digest = rest
	case req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated:
		digest = req.URL.Query().Get("mount")
	case req.Method == http.MethodPut && resp.StatusCode == http.StatusCreated:
		digest = req.URL.Query().Get("digest")
	}
	if digest != "" {
		t.mu.Lock()
		if !rp.done[digest] {
			rp.done[digest] = true
			fmt.Fprintf(t.w, "pushing %s: %d/%d blobs, %s\n", rp.label, len(rp.done), rp.total, humanBytes(rp.bytes.Load()))
		}
		t.mu.Unlock()
	}
	return resp, nil
}

var _ http.RoundTripper = (*progressTracker)(nil)

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// humanBytes formats n in decimal units, as docker does.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
