package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// repoBlobs is a blob store that keeps each repository's blobs apart, as
// distribution does (ggcr's in-memory one shares them between repositories,
// which leaves nothing to mount).
type repoBlobs struct {
	mu sync.Mutex
	m  map[string][]byte // "repo@digest"
}

// key names blob h in repo. ggcr's registry names the repository of a
// finished upload (/v2/REPO/blobs/uploads/ID) "REPO/blobs".
func (b *repoBlobs) key(repo string, h v1.Hash) string {
	return strings.TrimSuffix(repo, "/blobs") + "@" + h.String()
}

func (b *repoBlobs) Get(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.m[b.key(repo, h)]
	if !ok {
		return nil, regserver.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(c)), nil
}

func (b *repoBlobs) Stat(_ context.Context, repo string, h v1.Hash) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.m[b.key(repo, h)]
	if !ok {
		return 0, regserver.ErrNotFound
	}
	return int64(len(c)), nil
}

func (b *repoBlobs) Put(_ context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	c, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[b.key(repo, h)] = c
	return nil
}

// mount copies blob h from repository from to repo, if from has it.
func (b *repoBlobs) mount(repo, from string, h v1.Hash) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.m[b.key(from, h)]
	if ok {
		b.m[b.key(repo, h)] = c
	}
	return ok
}

// mountRegistry configures newMountRegistry.
type mountRegistry struct {
	// declineMounts answers every mount request with a plain upload
	// session (202), as a registry does that will not mount.
	declineMounts bool
	// refuseForeignScopes makes the registry a token registry whose token
	// endpoint refuses (403) any request asking for more than one scope,
	// as a token server may when it will not grant pull on the source.
	refuseForeignScopes bool
}

// newMountRegistry serves an in-memory registry that keeps repositories'
// blobs apart and mounts blobs across repositories (POST
// .../blobs/uploads/?mount=DIGEST&from=REPO answered 201), recording the
// requests it receives.
func newMountRegistry(t *testing.T, mr mountRegistry) (host string, reqs *requestLog) {
	t.Helper()
	reqs = &requestLog{}
	blobs := &repoBlobs{m: map[string][]byte{}}
	reg := regserver.New(regserver.Logger(log.New(io.Discard, "", 0)), regserver.WithBlobHandler(blobs))
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.add(r)
		if mr.refuseForeignScopes {
			if r.URL.Path == "/token" {
				if len(r.URL.Query()["scope"]) > 1 {
					http.Error(w, `{"errors":[{"code":"DENIED"}]}`, http.StatusForbidden)
					return
				}
				fmt.Fprint(w, `{"token":"ok"}`)
				return
			}
			if r.Header.Get("Authorization") != "Bearer ok" {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		q := r.URL.Query()
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") && q.Get("mount") != "" {
			repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/uploads/")
			h, err := v1.NewHash(q.Get("mount"))
			// A token registry's tokens here never grant pull on another
			// repository.
			if err == nil && !mr.declineMounts && !mr.refuseForeignScopes && blobs.mount(repo, q.Get("from"), h) {
				w.Header().Set("Location", "/v2/"+repo+"/blobs/"+h.String())
				w.Header().Set("Docker-Content-Digest", h.String())
				w.WriteHeader(http.StatusCreated)
				return
			}
			r = r.Clone(r.Context())
			r.URL.RawQuery = ""
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), reqs
}

func TestPushMountsFromBlobSources(t *testing.T) {
	t.Parallel()
	base, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := random.Layer(512, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	baseLayers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var baseDigests []v1.Hash
	for _, l := range baseLayers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		baseDigests = append(baseDigests, d)
	}
	sourcesIn := func(repo string) map[v1.Hash][]string {
		m := map[v1.Hash][]string{}
		for _, d := range baseDigests {
			m[d] = []string{"unrelated.example/base/debian", repo}
		}
		return m
	}

	for _, tc := range []struct {
		name    string
		reg     mountRegistry
		sources func(host string) map[v1.Hash][]string
		mounted bool // base layers mounted, not uploaded
		asked   bool // a mount from base/debian was asked for (unchecked with refuseForeignScopes)
	}{
		{name: "mounted", sources: func(h string) map[v1.Hash][]string { return sourcesIn(h + "/base/debian") }, mounted: true, asked: true},
		{name: "source in another registry", sources: func(string) map[v1.Hash][]string { return sourcesIn("other.example/base/debian") }},
		{name: "no sources", sources: func(string) map[v1.Hash][]string { return nil }},
		{name: "mount declined", reg: mountRegistry{declineMounts: true}, sources: func(h string) map[v1.Hash][]string { return sourcesIn(h + "/base/debian") }, asked: true},
		{name: "pull scope refused", reg: mountRegistry{refuseForeignScopes: true}, sources: func(h string) map[v1.Hash][]string { return sourcesIn(h + "/base/debian") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host, reqs := newMountRegistry(t, tc.reg)
			seed, err := NewPusher(Options{Keychain: authn.NewMultiKeychain()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := seed.Push(t.Context(), base, mustRefs(t, host+"/base/debian:latest")); err != nil {
				t.Fatal(err)
			}
			reqs.take()

			p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), BlobSources: tc.sources(host)})
			if err != nil {
				t.Fatal(err)
			}
			refs := mustRefs(t, host+"/team/app:v1", host+"/team/other:v1")
			want, err := p.Push(t.Context(), img, refs)
			if err != nil {
				t.Fatal(err)
			}
			log := reqs.take()
			t.Logf("requests:\n%s", strings.Join(log, "\n"))

			for _, d := range baseDigests {
				mountAsked := fmt.Sprintf("POST /v2/team/app/blobs/uploads/?%s", url.Values{"from": {"base/debian"}, "mount": {d.String()}, "origin": {host}}.Encode())
				if got := contains(log, mountAsked); got != tc.asked && !tc.reg.refuseForeignScopes {
					t.Errorf("mount of %s from base/debian asked: %t, want %t", d, got, tc.asked)
				}
				uploaded := contains(log, "PUT /v2/team/app/blobs/uploads/", url.Values{"digest": {d.String()}}.Encode())
				if uploaded == tc.mounted {
					t.Errorf("base layer %s uploaded: %t, want %t", d, uploaded, !tc.mounted)
				}
			}
			if tc.reg.refuseForeignScopes && !contains(log, "GET /token?", url.Values{"scope": {"repository:base/debian:pull"}}.Encode()) {
				t.Error("no token with pull on base/debian was asked for")
			}
			// The second repository mounts everything from the first, as
			// before.
			for _, r := range log {
				if mountsWork := !tc.reg.declineMounts && !tc.reg.refuseForeignScopes; mountsWork &&
					strings.Contains(r, "/team/other/blobs/uploads/") && (!strings.HasPrefix(r, "POST ") || !strings.Contains(r, "from=team%2Fapp")) {
					t.Errorf("team/other got a blob other than by a mount from team/app: %s", r)
				}
			}
			for _, ref := range refs {
				assertServes(t, ref, want, remote.WithAuthFromKeychain(authn.NewMultiKeychain()))
			}
		})
	}
}

// contains reports whether a request in log contains every one of parts.
func contains(log []string, parts ...string) bool {
	for _, r := range log {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(r, p)
		}
		if all {
			return true
		}
	}
	return false
}
