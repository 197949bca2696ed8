package registry

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestCheckPush(t *testing.T) {
	t.Parallel()
	host, reqs := newTestRegistry(t)
	// A registry that lets anyone pull and no one start an upload.
	readOnly := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(readOnly.Close)
	roHost := strings.TrimPrefix(readOnly.URL, "http://")

	p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	// Two tags of one repository are one probe; each probe is cancelled.
	if err := p.CheckPush(t.Context(), mustRefs(t, host+"/app:v1", host+"/app:latest", host+"/other:v1")); err != nil {
		t.Fatal(err)
	}
	got := reqs.take()
	var posts, deletes int
	for _, r := range got {
		switch {
		case strings.HasPrefix(r, "POST "):
			posts++
		case strings.HasPrefix(r, "DELETE "):
			deletes++
		}
	}
	if posts != 2 || deletes != 2 {
		t.Errorf("requests %q: want 2 upload starts and 2 cancels", got)
	}
	if slices.ContainsFunc(got, func(r string) bool { return strings.Contains(r, "/manifests/") }) {
		t.Errorf("requests %q: the check touched a manifest", got)
	}

	err = p.CheckPush(t.Context(), mustRefs(t, host+"/app:v1", roHost+"/team/app:v2"))
	if err == nil {
		t.Fatal("CheckPush on a read-only registry succeeded")
	}
	for _, want := range []string{"checking push permission for " + roHost + "/team/app:v2", "DENIED", "requested access to the resource is denied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestPushImmutableTag pushes to a registry that refuses to move tags, as
// ECR and Artifact Registry answer for immutable repositories.
func TestPushImmutableTag(t *testing.T) {
	t.Parallel()
	answers := map[string]string{
		"ecr": `{"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable."}]}`,
		"gar": `{"errors":[{"code":"DENIED","message":"Failed to tag image: The repository has enabled tag immutability."}]}`,
		// Another 400 is not an immutable tag.
		"other": `{"errors":[{"code":"TAG_INVALID","message":"manifest tag did not match URI"}]}`,
	}
	for kind, answer := range answers {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			reg := regserver.New(regserver.Logger(log.New(io.Discard, "", 0)))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/v1") {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					io.WriteString(w, answer)
					return
				}
				reg.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			host := strings.TrimPrefix(srv.URL, "http://")
			img := randomImage(t)
			refs := mustRefs(t, host+"/app:v1", host+"/app:latest")

			plain, err := NewPusher(Options{Keychain: authn.NewMultiKeychain()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := plain.Push(t.Context(), img, refs); err == nil || !strings.Contains(err.Error(), "/manifests/v1") {
				t.Fatalf("push without OnImmutableTag: %v, want the refusal", err)
			}

			var mu sync.Mutex
			var ignored []string
			p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), OnImmutableTag: func(ref name.Reference, err error) {
				mu.Lock()
				defer mu.Unlock()
				ignored = append(ignored, ref.String())
			}})
			if err != nil {
				t.Fatal(err)
			}
			digest, err := p.Push(t.Context(), img, refs)
			if kind == "other" {
				if err == nil || len(ignored) != 0 {
					t.Fatalf("a tag refused for another reason: err %v, ignored %q", err, ignored)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ignored, []string{host + "/app:v1"}) {
				t.Errorf("ignored %q, want the v1 tag", ignored)
			}
			want, _ := img.Digest()
			if digest != want {
				t.Errorf("digest %s, want %s", digest, want)
			}
			// The mutable tag still got the image.
			assertServes(t, refs[1], want)
			if _, err := remote.Head(refs[0]); err == nil {
				t.Errorf("%s exists; the registry refused it", refs[0])
			}
		})
	}
}

func TestPushImmutableTagOnly(t *testing.T) {
	t.Parallel()
	// Every tag immutable: a digest reference still gets the manifest.
	reg := regserver.New(regserver.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/v1") {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errors":[{"code":"TAG_INVALID","message":"cannot be overwritten because the repository is immutable"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img := randomImage(t)
	want, _ := img.Digest()
	p, err := NewPusher(Options{Keychain: authn.NewMultiKeychain(), OnImmutableTag: func(name.Reference, error) {}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(t.Context(), img, mustRefs(t, host+"/app:v1", host+"/app@"+want.String())); err != nil {
		t.Fatal(err)
	}
	assertServes(t, mustRefs(t, host+"/app@"+want.String())[0], want)
}
