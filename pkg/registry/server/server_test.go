package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

// startServer serves New(root) and returns its host and a stop func.
func startServer(t *testing.T, root string) (string, func()) {
	t.Helper()
	h, err := New(root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	return strings.TrimPrefix(srv.URL, "http://"), srv.Close
}

func TestServerSurvivesRestart(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	img := randomImage(t)
	imgDigest := digestOf(t, img)
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	// Before the restart: push, then delete one tag and one digest.
	host, stop := startServer(t, root)
	p, err := registry.NewPusher(registry.Options{Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(t.Context(), img, mustRefs(t, host+"/app:v1", host+"/app:old", host+"/team/app:v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PushIndex(t.Context(), idx, mustRefs(t, host+"/multi:v1")); err != nil {
		t.Fatal(err)
	}
	other := randomImage(t)
	otherDigest := digestOf(t, other)
	if _, err := p.Push(t.Context(), other, mustRefs(t, host+"/gone:v1")); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{host + "/app:old", host + "/gone@" + otherDigest} {
		if err := remote.Delete(mustRefs(t, ref)[0]); err != nil {
			t.Fatalf("deleting %s: %v", ref, err)
		}
	}
	stop()

	host, stop = startServer(t, root)
	defer stop()
	for _, tc := range []struct {
		ref        string
		wantDigest string
		index      bool
		wantStatus int // 0: found
	}{
		{ref: host + "/app:v1", wantDigest: imgDigest},
		{ref: host + "/app@" + imgDigest, wantDigest: imgDigest},
		{ref: host + "/team/app:v1", wantDigest: imgDigest},
		{ref: host + "/multi:v1", wantDigest: idxDigest.String(), index: true},
		{ref: host + "/multi@" + idxDigest.String(), wantDigest: idxDigest.String(), index: true},
		{ref: host + "/gone:v1", wantDigest: otherDigest},
		{ref: host + "/app:old", wantStatus: http.StatusNotFound},
		{ref: host + "/gone@" + otherDigest, wantStatus: http.StatusNotFound},
	} {
		ref := mustRefs(t, tc.ref)[0]
		desc, err := remote.Get(ref)
		if tc.wantStatus != 0 {
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != tc.wantStatus {
				t.Errorf("remote.Get(%s) error = %v, want status %d", ref, err, tc.wantStatus)
			}
			continue
		}
		if err != nil {
			t.Errorf("remote.Get(%s): %v", ref, err)
			continue
		}
		if desc.Digest.String() != tc.wantDigest {
			t.Errorf("%s has digest %s, want %s", ref, desc.Digest, tc.wantDigest)
		}
		if tc.index {
			got, err := desc.ImageIndex()
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(got); err != nil {
				t.Errorf("validate.Index(%s): %v", ref, err)
			}
			continue
		}
		got, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("validate.Image(%s): %v", ref, err)
		}
	}
}

func TestServerRejectsBadNames(t *testing.T) {
	t.Parallel()
	h, err := New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/v2/../../etc/manifests/v1",
		"/v2/app/manifests/..",
		"/v2/App/manifests/v1",
	} {
		req := httptest.NewRequest(http.MethodPut, "/", strings.NewReader("{}"))
		req.URL.Path = path // unlike a URL string, not cleaned
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("PUT %s: status %d, want %d", path, rec.Code, http.StatusBadRequest)
		}
	}
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func mustRefs(t *testing.T, ss ...string) []name.Reference {
	t.Helper()
	var refs []name.Reference
	for _, s := range ss {
		ref, err := registry.ParseReference(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	return refs
}
