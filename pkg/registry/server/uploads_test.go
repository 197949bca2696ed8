package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// response is what a test keeps of one exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// code is the first error code of a distribution error body.
func (r response) code() string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

func do(t *testing.T, method, url string, body []byte, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// startUploadServer serves New(root) and returns its base URL.
func startUploadServer(t *testing.T, root string) string {
	t.Helper()
	h, err := New(root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Of(t *testing.T, b []byte) string {
	t.Helper()
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// wantNoUploads checks that no upload file is left under root.
func wantNoUploads(t *testing.T, root string) {
	t.Helper()
	left, err := os.ReadDir(filepath.Join(root, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("upload file %s left behind", e.Name())
	}
}

func TestServerChunkedUpload(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	base := startUploadServer(t, root)
	blob := randomBytes(t, 3<<20+17)
	digest := sha256Of(t, blob)

	r := do(t, http.MethodPost, base+"/v2/team/app/blobs/uploads/", nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST: status %d, want %d: %s", r.status, http.StatusAccepted, r.body)
	}
	loc, id := r.header.Get("Location"), r.header.Get("Docker-Upload-UUID")
	if id == "" || loc != "/v2/team/app/blobs/uploads/"+id || r.header.Get("Range") != "0-0" {
		t.Fatalf("POST: Location %q, Docker-Upload-UUID %q, Range %q", loc, id, r.header.Get("Range"))
	}

	// Three chunks, each continuing where the last one ended.
	chunks := [][2]int{{0, 1 << 20}, {1 << 20, 2<<20 + 5}, {2<<20 + 5, len(blob)}}
	for _, c := range chunks {
		r = do(t, http.MethodPatch, base+loc, blob[c[0]:c[1]],
			"Content-Range", fmt.Sprintf("%d-%d", c[0], c[1]-1), "Content-Type", "application/octet-stream")
		if r.status != http.StatusAccepted {
			t.Fatalf("PATCH %v: status %d, want %d: %s", c, r.status, http.StatusAccepted, r.body)
		}
		if got, want := r.header.Get("Range"), fmt.Sprintf("0-%d", c[1]-1); got != want {
			t.Errorf("PATCH %v: Range %q, want %q", c, got, want)
		}
		if got := r.header.Get("Location"); got != loc {
			t.Errorf("PATCH %v: Location %q, want %q", c, got, loc)
		}
		loc = r.header.Get("Location")
	}

	// A chunk that does not continue the upload is refused and changes nothing.
	r = do(t, http.MethodPatch, base+loc, blob[:10], "Content-Range", "0-9")
	if r.status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("out-of-order PATCH: status %d, want %d", r.status, http.StatusRequestedRangeNotSatisfiable)
	}
	r = do(t, http.MethodGet, base+loc, nil)
	if want := fmt.Sprintf("0-%d", len(blob)-1); r.status != http.StatusNoContent || r.header.Get("Range") != want {
		t.Errorf("GET upload: status %d Range %q, want %d %q", r.status, r.header.Get("Range"), http.StatusNoContent, want)
	}

	r = do(t, http.MethodPut, base+loc+"?digest="+digest, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("PUT: status %d, want %d: %s", r.status, http.StatusCreated, r.body)
	}
	if got := r.header.Get("Docker-Content-Digest"); got != digest {
		t.Errorf("PUT: Docker-Content-Digest %q, want %q", got, digest)
	}
	if got, want := r.header.Get("Location"), "/v2/team/app/blobs/"+digest; got != want {
		t.Errorf("PUT: Location %q, want %q", got, want)
	}
	wantNoUploads(t, root)

	// ggcr serves the blob from where the upload put it.
	r = do(t, http.MethodGet, base+"/v2/team/app/blobs/"+digest, nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, blob) {
		t.Errorf("GET blob: status %d, %d bytes, want %d and the %d bytes uploaded", r.status, len(r.body), http.StatusOK, len(blob))
	}
	// The session is over.
	if r = do(t, http.MethodPatch, base+loc, blob[:1]); r.status != http.StatusNotFound || r.code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("PATCH after PUT: status %d code %q, want 404 BLOB_UPLOAD_UNKNOWN", r.status, r.code())
	}
}

func TestServerStreamedAndMonolithicUploads(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	base := startUploadServer(t, root)
	for _, tc := range []struct {
		name string
		push func(blob []byte, digest string) response // the final response
	}{
		{name: "monolithic POST", push: func(blob []byte, digest string) response {
			return do(t, http.MethodPost, base+"/v2/app/blobs/uploads/?digest="+digest, blob)
		}},
		{name: "POST then PUT with the body", push: func(blob []byte, digest string) response {
			r := do(t, http.MethodPost, base+"/v2/app/blobs/uploads/", nil)
			return do(t, http.MethodPut, base+r.header.Get("Location")+"?digest="+digest, blob)
		}},
		{name: "streamed PATCHes without Content-Range, then PUT with the rest", push: func(blob []byte, digest string) response {
			r := do(t, http.MethodPost, base+"/v2/app/blobs/uploads/", nil)
			r = do(t, http.MethodPatch, base+r.header.Get("Location"), blob[:1000])
			r = do(t, http.MethodPatch, base+r.header.Get("Location"), blob[1000:5000])
			if r.header.Get("Range") != "0-4999" {
				t.Errorf("second PATCH: Range %q, want 0-4999", r.header.Get("Range"))
			}
			return do(t, http.MethodPut, base+r.header.Get("Location")+"?digest="+digest, blob[5000:])
		}},
	} {
		blob := randomBytes(t, 64<<10)
		digest := sha256Of(t, blob)
		if r := tc.push(blob, digest); r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != digest {
			t.Errorf("%s: status %d digest %q, want %d %s: %s", tc.name, r.status, r.header.Get("Docker-Content-Digest"), http.StatusCreated, digest, r.body)
			continue
		}
		if r := do(t, http.MethodGet, base+"/v2/app/blobs/"+digest, nil); !bytes.Equal(r.body, blob) {
			t.Errorf("%s: GET blob: status %d, %d bytes, want the %d bytes uploaded", tc.name, r.status, len(r.body), len(blob))
		}
	}
	wantNoUploads(t, root)
}

func TestServerUploadErrors(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	base := startUploadServer(t, root)
	blob := randomBytes(t, 4096)
	digest := sha256Of(t, blob)
	wrong := sha256Of(t, blob[1:])

	start := func() string {
		r := do(t, http.MethodPost, base+"/v2/app/blobs/uploads/", nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("POST: status %d: %s", r.status, r.body)
		}
		return base + r.header.Get("Location")
	}
	for _, tc := range []struct {
		name       string
		do         func() response
		wantStatus int
		wantCode   string
	}{
		{"monolithic POST, wrong digest", func() response {
			return do(t, http.MethodPost, base+"/v2/app/blobs/uploads/?digest="+wrong, blob)
		}, http.StatusBadRequest, "DIGEST_INVALID"},
		{"PUT, wrong digest", func() response {
			loc := start()
			do(t, http.MethodPatch, loc, blob)
			return do(t, http.MethodPut, loc+"?digest="+wrong, nil)
		}, http.StatusBadRequest, "DIGEST_INVALID"},
		{"PUT, no digest", func() response {
			return do(t, http.MethodPut, start(), blob)
		}, http.StatusBadRequest, "DIGEST_INVALID"},
		{"PATCH, Content-Range longer than the body", func() response {
			return do(t, http.MethodPatch, start(), blob, "Content-Range", fmt.Sprintf("0-%d", len(blob)))
		}, http.StatusBadRequest, "SIZE_INVALID"},
		{"PATCH, unknown upload", func() response {
			return do(t, http.MethodPatch, base+"/v2/app/blobs/uploads/nosuchupload", blob)
		}, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
		{"PATCH, another repository's upload", func() response {
			loc := start()
			return do(t, http.MethodPatch, strings.Replace(loc, "/v2/app/", "/v2/other/", 1), blob)
		}, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
	} {
		r := tc.do()
		if r.status != tc.wantStatus || r.code() != tc.wantCode {
			t.Errorf("%s: status %d code %q, want %d %s: %s", tc.name, r.status, r.code(), tc.wantStatus, tc.wantCode, r.body)
		}
	}
	// Nothing was stored under either digest.
	for _, d := range []string{digest, wrong} {
		if r := do(t, http.MethodHead, base+"/v2/app/blobs/"+d, nil); r.status != http.StatusNotFound {
			t.Errorf("HEAD %s after failed uploads: status %d, want 404", d, r.status)
		}
		p := filepath.Join(root, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after failed uploads (stat: %v)", p, err)
		}
	}

	// An upload refused at PUT is gone; one cancelled with DELETE too.
	loc := start()
	do(t, http.MethodPatch, loc, blob)
	do(t, http.MethodPut, loc+"?digest="+wrong, nil)
	if r := do(t, http.MethodPut, loc+"?digest="+digest, nil); r.status != http.StatusNotFound || r.code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("PUT after a refused PUT: status %d code %q, want 404 BLOB_UPLOAD_UNKNOWN", r.status, r.code())
	}
	loc = start()
	do(t, http.MethodPatch, loc, blob)
	if r := do(t, http.MethodDelete, loc, nil); r.status != http.StatusNoContent {
		t.Errorf("DELETE upload: status %d, want %d", r.status, http.StatusNoContent)
	}
	if r := do(t, http.MethodPatch, loc, blob); r.status != http.StatusNotFound || r.code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("PATCH after DELETE: status %d code %q, want 404 BLOB_UPLOAD_UNKNOWN", r.status, r.code())
	}
	// Sessions whose errors did not end them (bad Content-Range, the other
	// repository's) are still open: a restart removes them.
	if left, err := os.ReadDir(filepath.Join(root, "uploads")); err != nil || len(left) == 0 {
		t.Errorf("want the open sessions' files before the restart, got %d (%v)", len(left), err)
	}
	if _, err := New(root, nil); err != nil {
		t.Fatal(err)
	}
	wantNoUploads(t, root)
}

func TestServerCrossRepoMount(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	h, err := New(root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var patches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			patches.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img := randomImage(t)
	src, err := name.ParseReference(host+"/src:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(src, img); err != nil {
		t.Fatal(err)
	}
	pushed := patches.Load()

	// Blobs are stored once for all repositories, so pushing the image to
	// another one uploads nothing: ggcr finds each blob by HEAD or mounts it.
	remoteImg, err := remote.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.ParseReference(host+"/team/dst:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, remoteImg); err != nil {
		t.Fatalf("pushing %s: %v", dst, err)
	}
	if n := patches.Load() - pushed; n != 0 {
		t.Errorf("pushing %s from %s uploaded %d blobs, want none", dst, src, n)
	}
	got, err := remote.Image(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Errorf("validate.Image(%s): %v", dst, err)
	}

	// By hand: a mount answers 201; a mount of a missing blob opens a session.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	r := do(t, http.MethodPost, srv.URL+"/v2/third/blobs/uploads/?mount="+d.String()+"&from=src", nil)
	if r.status != http.StatusCreated || r.header.Get("Location") != "/v2/third/blobs/"+d.String() || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("mount: status %d Location %q Docker-Content-Digest %q", r.status, r.header.Get("Location"), r.header.Get("Docker-Content-Digest"))
	}
	missing := sha256Of(t, []byte("not stored"))
	r = do(t, http.MethodPost, srv.URL+"/v2/third/blobs/uploads/?mount="+missing+"&from=src", nil)
	if r.status != http.StatusAccepted || r.header.Get("Docker-Upload-UUID") == "" {
		t.Errorf("mount of a missing blob: status %d Docker-Upload-UUID %q, want 202 and a session", r.status, r.header.Get("Docker-Upload-UUID"))
	}
}
