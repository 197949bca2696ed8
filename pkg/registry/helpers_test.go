package registry

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// newTestRegistry serves an in-memory registry and records the requests it
// receives.
func newTestRegistry(t *testing.T) (host string, reqs *requestLog) {
	t.Helper()
	reqs = &requestLog{}
	reg := regserver.New(regserver.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.add(r)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), reqs
}

// requestLog records requests as "METHOD /path", digests and upload ids
// included (and "?query" when there is one), so that a test can count them
// by method and path.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	req := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		req += "?" + r.URL.RawQuery
	}
	l.reqs = append(l.reqs, req)
}

// take returns the requests recorded since the last call and forgets them.
func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	reqs := l.reqs
	l.reqs = nil
	return reqs
}

// uploads counts the requests that upload blob content (POST/PATCH/PUT under
// /blobs/).
func uploads(reqs []string) int {
	n := 0
	for _, r := range reqs {
		method, path, _ := strings.Cut(r, " ")
		if strings.Contains(path, "/blobs/") && method != http.MethodGet && method != http.MethodHead {
			n++
		}
	}
	return n
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustRefs(t *testing.T, ss ...string) []name.Reference {
	t.Helper()
	var refs []name.Reference
	for _, s := range ss {
		ref, err := ParseReference(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	return refs
}

var errBrokenLayer = errors.New("layer read failed")

// brokenImage is an image whose layers fail half-way through reading their
// compressed content, to exercise the writers' failure paths.
type brokenImage struct{ v1.Image }

func (b brokenImage) Layers() ([]v1.Layer, error) {
	ls, err := b.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = brokenLayer{l}
	}
	return out, nil
}

type brokenLayer struct{ v1.Layer }

func (b brokenLayer) Compressed() (io.ReadCloser, error) {
	rc, err := b.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 100), errReader{}), rc}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBrokenLayer }

// assertServes fails unless ref serves the manifest want, as an image that
// validates.
func assertServes(t *testing.T, ref name.Reference, want v1.Hash, opts ...remote.Option) {
	t.Helper()
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		t.Fatalf("remote.Get(%s): %v", ref, err)
	}
	if desc.Digest != want {
		t.Errorf("%s serves %s, want %s", ref, desc.Digest, want)
	}
	pulled, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Errorf("validate.Image(%s): %v", ref, err)
	}
}
