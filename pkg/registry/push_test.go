package registry

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestPush(t *testing.T) {
	t.Parallel()
	host, reqs := newTestRegistry(t)
	img := randomImage(t)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	refs := mustRefs(t, host+"/app:v1", host+"/app:latest", host+"/other/app:v1")

	var progress bytes.Buffer
	p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Push(t.Context(), img, refs)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Push returned %s, want %s", got, want)
	}
	if uploads(reqs.take()) == 0 {
		t.Error("first push uploaded no blob")
	}
	for _, ref := range append(refs, refs[0].Context().Digest(want.String()), refs[2].Context().Digest(want.String())) {
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatalf("remote.Get(%s): %v", ref, err)
		}
		if desc.Digest != want {
			t.Errorf("%s has digest %s, want %s", ref, desc.Digest, want)
		}
		pulled, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(pulled); err != nil {
			t.Errorf("validate.Image(%s): %v", ref, err)
		}
	}
	t.Log(progress.String())
	for _, line := range []string{"pushing " + refs[0].String() + ": 4/4 blobs", "pushed " + refs[2].String() + "@" + want.String()} {
		if !strings.Contains(progress.String(), line) {
			t.Errorf("progress output lacks %q:\n%s", line, progress.String())
		}
	}

	// Everything is there already: a second push, even from a fresh pusher,
	// must not upload a single blob.
	reqs.take()
	p2, err := NewPusher(Options{Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Push(t.Context(), img, refs); err != nil {
		t.Fatal(err)
	}
	if n := uploads(reqs.take()); n != 0 {
		t.Errorf("second push made %d blob upload requests, want 0", n)
	}
}

func TestPushIndex(t *testing.T) {
	t.Parallel()
	host, _ := newTestRegistry(t)
	idx, err := random.Index(512, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	refs := mustRefs(t, host+"/multi:v1", host+"/copy:v1")
	p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.PushIndex(t.Context(), idx, refs)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("PushIndex returned %s, want %s", got, want)
	}
	for _, ref := range refs {
		pulled, err := remote.Index(ref)
		if err != nil {
			t.Fatalf("remote.Index(%s): %v", ref, err)
		}
		if d, _ := pulled.Digest(); d != want {
			t.Errorf("%s has digest %s, want %s", ref, d, want)
		}
		if err := validate.Index(pulled); err != nil {
			t.Errorf("validate.Index(%s): %v", ref, err)
		}
	}
}

func TestPushErrors(t *testing.T) {
	t.Parallel()
	unauthorized := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(unauthorized.Close)
	// A registry that accepts blobs but refuses manifests.
	reg := regserver.New(regserver.Logger(log.New(io.Discard, "", 0)))
	noManifests := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			http.Error(w, "no", http.StatusBadRequest) // 5xx would be retried
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(noManifests.Close)

	for _, tc := range []struct {
		name string
		url  string
		want []string
	}{
		{"unauthorized", unauthorized.URL, []string{"authenticating to " + strings.TrimPrefix(unauthorized.URL, "http://"), "pushing blob sha256:"}},
		{"manifest refused", noManifests.URL, []string{"pushing manifest sha256:", strings.TrimPrefix(noManifests.URL, "http://") + "/app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Push(t.Context(), randomImage(t), mustRefs(t, strings.TrimPrefix(tc.url, "http://")+"/app:v1"))
			if err == nil {
				t.Fatal("Push succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPushBadRefs(t *testing.T) {
	t.Parallel()
	p, err := NewPusher(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		refs []name.Reference
	}{
		{"none", nil},
		{"other digest", mustRefs(t, "127.0.0.1:1/app@sha256:"+strings.Repeat("a", 64))},
	} {
		if _, err := p.Push(t.Context(), randomImage(t), tc.refs); err == nil {
			t.Errorf("%s: Push succeeded", tc.name)
		}
	}
}

// TestPushInsecureTLS pushes to a registry with a self-signed certificate,
// which only works when the host is listed as insecure.
func TestPushInsecureTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(regserver.New(regserver.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	// Loopback is otherwise reached over http, which this server does not
	// speak; an explicit name.Reference shows Options.Insecure is honoured
	// even for references not made by ParseReference.
	ref, err := name.ParseReference(host + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t)
	for _, tc := range []struct {
		name     string
		insecure []string
		wantErr  bool
	}{
		{"verified", nil, true},
		{"insecure", []string{host}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), Insecure: tc.insecure})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Push(t.Context(), img, []name.Reference{ref})
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("Push error = %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}
