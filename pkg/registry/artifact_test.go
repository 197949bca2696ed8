package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func testArtifact(t *testing.T, contents ...string) *Artifact {
	t.Helper()
	a := &Artifact{ArtifactType: "application/vnd.example.test.v1", Annotations: map[string]string{"k": "v"}}
	for i, c := range contents {
		d, n, err := v1.SHA256(bytes.NewReader([]byte(c)))
		if err != nil {
			t.Fatal(err)
		}
		a.Blobs = append(a.Blobs, Blob{
			MediaType: "application/vnd.oci.image.layer.v1.tar+zstd", Digest: d, Size: n,
			Annotations: map[string]string{"n": fmt.Sprint(i)},
			Open:        func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte(c))), nil },
		})
	}
	return a
}

// TestArtifactRoundTrip pushes an artifact and reads back its manifest and
// blobs; pushing it again uploads nothing.
func TestArtifactRoundTrip(t *testing.T) {
	t.Parallel()
	host, reqs := newTestRegistry(t)
	p, err := NewPusher(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/art:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.PullArtifact(t.Context(), ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pulling before the push: %v, want ErrNotFound", err)
	}
	a := testArtifact(t, "one", "two")
	digest, err := p.PushArtifact(t.Context(), a, ref)
	if err != nil {
		t.Fatal(err)
	}
	m, got, err := p.PullArtifact(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got != digest {
		t.Errorf("pulled %s, pushed %s", got, digest)
	}
	if m.ArtifactType != a.ArtifactType || m.Config.MediaType != EmptyConfigMediaType || m.Config.Size != 2 || m.Annotations["k"] != "v" {
		t.Errorf("manifest %+v", m)
	}
	for i, l := range m.Layers {
		if l.MediaType != types.MediaType("application/vnd.oci.image.layer.v1.tar+zstd") || l.Annotations["n"] != fmt.Sprint(i) {
			t.Errorf("layer %d: %+v", i, l)
		}
		rc, err := p.OpenBlob(t.Context(), ref.Context(), l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"one", "two"}[i]; string(b) != want {
			t.Errorf("blob %d: %q, want %q", i, b, want)
		}
	}
	reqs.take()
	if _, err := p.PushArtifact(t.Context(), testArtifact(t, "one", "two"), ref); err != nil {
		t.Fatal(err)
	}
	if n := uploads(reqs.take()); n != 0 {
		t.Errorf("pushing the same artifact again: %d upload requests, want 0", n)
	}
}

// TestArtifactConcurrentWriters pushes eight different artifacts sharing a
// blob to one tag at once: every push succeeds and the tag serves one of
// them.
func TestArtifactConcurrentWriters(t *testing.T) {
	t.Parallel()
	host, _ := newTestRegistry(t)
	ref, err := name.ParseReference(host + "/art:shared")
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	digests := make([]v1.Hash, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each writer its own Pusher, as each pod has.
			p, err := NewPusher(Options{})
			if err != nil {
				errs[i] = err
				return
			}
			digests[i], errs[i] = p.PushArtifact(t.Context(), testArtifact(t, "shared", fmt.Sprint("own ", i)), ref)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	p, err := NewPusher(Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := p.PullArtifact(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range digests {
		found = found || d == got
	}
	if !found {
		t.Errorf("the tag serves %s, none of the pushed %v", got, digests)
	}
}

// TestConcurrentUploadRace: the answers distribution 2.8 gives when one
// blob is uploaded twice at once are retried; others are not.
func TestConcurrentUploadRace(t *testing.T) {
	for _, tc := range []struct {
		code transport.ErrorCode
		want bool
	}{
		{transport.DigestInvalidErrorCode, true},
		{transport.ManifestBlobUnknownErrorCode, true},
		{transport.BlobUnknownErrorCode, true},
		{transport.DeniedErrorCode, false},
		{transport.ManifestInvalidErrorCode, false},
	} {
		err := fmt.Errorf("pushing: %w", &transport.Error{Errors: []transport.Diagnostic{{Code: tc.code}}, StatusCode: 400})
		if got := concurrentUploadRace(err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.code, got, tc.want)
		}
	}
	if concurrentUploadRace(errors.New("connection reset")) {
		t.Error("a plain error counted as the race")
	}
}
