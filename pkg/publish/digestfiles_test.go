package publish

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestDigestFilesKanikoFormat checks the files byte for byte against
// kaniko's formats (pkg/executor/push.go): no newline after the bare digest,
// fully qualified repositories, one line per destination.
func TestDigestFilesKanikoFormat(t *testing.T) {
	dir := t.TempDir()
	var refs []name.Reference
	for _, s := range []string{"alpine:3", "registry.example.com:5000/team/app:v1", "ghcr.io/o/r@" + testDigest} {
		r, err := name.ParseReference(s)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	d := DigestFiles{
		Digest:        filepath.Join(dir, "new", "digest"),
		NameDigest:    filepath.Join(dir, "name-digest"),
		NameTagDigest: filepath.Join(dir, "name-tag-digest"),
	}
	if err := d.write(t.Context(), putter{}, refs, testDigest); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		d.Digest: testDigest,
		d.NameDigest: "index.docker.io/library/alpine@" + testDigest + "\n" +
			"registry.example.com:5000/team/app@" + testDigest + "\n" +
			"ghcr.io/o/r@" + testDigest + "\n",
		d.NameTagDigest: "index.docker.io/library/alpine:3@" + testDigest + "\n" +
			"registry.example.com:5000/team/app:v1@" + testDigest + "\n" +
			"ghcr.io/o/r@" + testDigest + "\n",
	}
	for path, w := range want {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, string(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", filepath.Base(path), diff)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", path, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Dir(d.Digest)); fi.Mode().Perm() != 0o700 {
		t.Errorf("created parent dir has mode %v, want 0700", fi.Mode().Perm())
	}
}

// TestDigestFileHTTPSPut checks that an https:// path is a PUT of
// text/plain, and that a refused PUT names the host but not the
// (possibly signed) URL.
func TestDigestFileHTTPSPut(t *testing.T) {
	var got, ctype, method string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, ctype, method = string(b), r.Header.Get("Content-Type"), r.Method
		if strings.Contains(r.URL.RawQuery, "deny") {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	put := putter{client: srv.Client()}

	d := DigestFiles{Digest: srv.URL + "/bucket/digest?X-Amz-Signature=secret"}
	if err := d.write(t.Context(), put, nil, testDigest); err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPut || ctype != "text/plain" || got != testDigest {
		t.Errorf("got %s %q with Content-Type %q", method, got, ctype)
	}
	d = DigestFiles{Digest: srv.URL + "/bucket/digest?deny&X-Amz-Signature=secret"}
	err := d.write(t.Context(), put, nil, testDigest)
	if err == nil || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "secret") {
		t.Errorf("refused PUT: got error %v, want a 403 that does not show the URL's signature", err)
	}
}
