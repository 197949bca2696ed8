package registry

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
		assertServes(t, ref, want)
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

// TestPushRequests counts the requests each push sends, each from a fresh
// Pusher as each imgbuild run makes one: an unchanged image costs a ping
// and a HEAD per repository, a manifest is put once, under its first tag.
func TestPushRequests(t *testing.T) {
	t.Parallel()
	host, reqs := newTestRegistry(t)
	img, img3, img4 := randomImage(t), randomImage(t), randomImage(t)
	extra, err := random.Layer(100, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	img2, err := mutate.AppendLayers(img, extra) // shares img's layers
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(512, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(m interface{ Digest() (v1.Hash, error) }) string {
		d, err := m.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	// withBlobs adds what uploading blobs costs: a HEAD for each blob
	// checked, then a POST, PATCH and PUT for each one sent.
	withBlobs := func(checked, sent int, want map[string]int) map[string]int {
		want["HEAD blob"] = checked
		want["POST upload"], want["PATCH upload"], want["PUT upload"] = sent, sent, sent
		return want
	}

	for _, tc := range []struct {
		name string
		m    manifest
		refs []string
		want map[string]int
	}{{
		// Two pings, the puller's and the pusher's. The tag's HEAD is
		// asked first and read back last.
		name: "first push",
		m:    img,
		refs: []string{"app:v1"},
		want: withBlobs(4, 4, map[string]int{"GET /v2/": 2, "HEAD manifest v1": 2, "HEAD manifest by digest": 1, "PUT manifest v1": 1}),
	}, {
		name: "unchanged",
		m:    img,
		refs: []string{"app:v1"},
		want: map[string]int{"GET /v2/": 1, "HEAD manifest v1": 1},
	}, {
		name: "new tag",
		m:    img,
		refs: []string{"app:v2"},
		want: map[string]int{"GET /v2/": 2, "HEAD manifest v2": 2, "HEAD manifest by digest": 1, "PUT manifest v2": 1},
	}, {
		name: "changed image moves the tag",
		m:    img2,
		refs: []string{"app:v1"},
		want: withBlobs(5, 2, map[string]int{"GET /v2/": 2, "HEAD manifest v1": 2, "HEAD manifest by digest": 1, "PUT manifest v1": 1}),
	}, {
		name: "one of two tags elsewhere",
		m:    img2,
		refs: []string{"app:v1", "app:v2"},
		want: map[string]int{"GET /v2/": 2, "HEAD manifest v1": 1, "HEAD manifest v2": 2, "PUT manifest v2": 1},
	}, {
		name: "digest only, unchanged",
		m:    img,
		refs: []string{"app@" + digest(img)},
		want: map[string]int{"GET /v2/": 1, "HEAD manifest by digest": 1},
	}, {
		name: "digest only, new image",
		m:    img3,
		refs: []string{"app@" + digest(img3)},
		want: withBlobs(4, 4, map[string]int{"GET /v2/": 2, "HEAD manifest by digest": 2, "PUT manifest by digest": 1}),
	}, {
		name: "tag and digest, new image",
		m:    img4,
		refs: []string{"app:v4", "app@" + digest(img4)},
		want: withBlobs(4, 4, map[string]int{"GET /v2/": 2, "HEAD manifest v4": 2, "HEAD manifest by digest": 2, "PUT manifest v4": 1}),
	}, {
		name: "index",
		m:    idx,
		refs: []string{"multi:v1"},
		// Each child is put by digest after a HEAD, and asked about once
		// before the blobs (one that is there costs nothing more).
		want: withBlobs(9, 9, map[string]int{"GET /v2/": 2, "HEAD manifest v1": 2, "HEAD manifest by digest": 1 + 3 + 3, "PUT manifest by digest": 3, "PUT manifest v1": 1}),
	}, {
		name: "index unchanged",
		m:    idx,
		refs: []string{"multi:v1"},
		want: map[string]int{"GET /v2/": 1, "HEAD manifest v1": 1},
	}} {
		var refs []string
		for _, r := range tc.refs {
			refs = append(refs, host+"/"+r)
		}
		var progress bytes.Buffer
		p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), Progress: &progress})
		if err != nil {
			t.Fatal(err)
		}
		reqs.take()
		switch m := tc.m.(type) {
		case v1.ImageIndex:
			_, err = p.PushIndex(t.Context(), m, mustRefs(t, refs...))
		case v1.Image:
			_, err = p.Push(t.Context(), m, mustRefs(t, refs...))
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := map[string]int{}
		for _, r := range reqs.take() {
			got[requestKind(r)]++
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: requests (-want +got):\n%s", tc.name, diff)
		}
		for _, ref := range refs {
			// A digest reference is not given its digest twice.
			line := "pushed " + ref + "@" + digest(tc.m)
			if strings.Contains(ref, "@") {
				line = "pushed " + ref + "\n"
			}
			if !strings.Contains(progress.String(), line) {
				t.Errorf("%s: progress output lacks %q:\n%s", tc.name, line, progress.String())
			}
		}
	}

	// What each tag serves in the end.
	for tag, m := range map[string]manifest{"app:v1": img2, "app:v2": img2, "app:v4": img4, "multi:v1": idx} {
		ref := mustRefs(t, host+"/"+tag)[0]
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatal(err)
		}
		if want := digest(m); desc.Digest.String() != want {
			t.Errorf("%s serves %s, want %s", ref, desc.Digest, want)
		}
	}
}

// requestKind names a recorded request by its step: "GET /v2/",
// "HEAD blob", "POST upload", "PUT manifest v1", "HEAD manifest by
// digest", ...
func requestKind(req string) string {
	method, path, _ := strings.Cut(req, " ")
	switch {
	case strings.Contains(path, "/blobs/uploads/"):
		return method + " upload"
	case strings.Contains(path, "/blobs/"):
		return method + " blob"
	case strings.Contains(path, "/manifests/sha256:"):
		return method + " manifest by digest"
	case strings.Contains(path, "/manifests/"):
		_, tag, _ := strings.Cut(path, "/manifests/")
		return method + " manifest " + tag
	}
	return req
}
