package builder

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func digestOf(s string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s)))
}

func TestSplitRegistryPath(t *testing.T) {
	t.Parallel()
	d := digestOf("x")
	for _, tc := range []struct {
		path            string
		repo, kind, ref string
		ok              bool
	}{
		{path: "/v2/busybox/manifests/latest", repo: "busybox", kind: "manifests", ref: "latest", ok: true},
		{path: "/v2/base/debian/manifests/" + d, repo: "base/debian", kind: "manifests", ref: d, ok: true},
		{path: "/v2/a/b/c/blobs/" + d, repo: "a/b/c", kind: "blobs", ref: d, ok: true},
		// A repository may be called "blobs" or "manifests".
		{path: "/v2/x/blobs/manifests/latest", repo: "x/blobs", kind: "manifests", ref: "latest", ok: true},
		{path: "/v2/app/blobs/uploads/", ok: false},
		{path: "/v2/app/blobs/uploads/some-uuid", ok: false},
		{path: "/v2/", ok: false},
		{path: "/v2/_catalog", ok: false},
		{path: "/token", ok: false},
		{path: "/prefix/v2/app/manifests/latest", ok: false},
	} {
		repo, kind, ref, ok := splitRegistryPath(tc.path)
		if repo != tc.repo || kind != tc.kind || ref != tc.ref || ok != tc.ok {
			t.Errorf("splitRegistryPath(%q) = %q, %q, %q, %t; want %q, %q, %q, %t",
				tc.path, repo, kind, ref, ok, tc.repo, tc.kind, tc.ref, tc.ok)
		}
	}
}

// manifestJSON is an image manifest naming config and layers.
func manifestJSON(t *testing.T, mt types.MediaType, config string, layers ...string) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mt,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1},
	}
	var ls []any
	for _, l := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": 1})
	}
	m["layers"] = ls
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSourceRecorder(t *testing.T) {
	t.Parallel()
	cfg, l1, l2, blob := digestOf("config"), digestOf("l1"), digestOf("l2"), digestOf("blob")
	ociManifest := manifestJSON(t, types.OCIManifestSchema1, cfg, l1, l2, l1)
	dockerManifest := manifestJSON(t, types.DockerManifestSchema2, cfg, l1)
	index := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"` + l1 + `"}]}`)
	// Bigger than what the recorder keeps; sent chunked.
	huge := manifestJSON(t, types.OCIManifestSchema1, cfg, l1)
	huge = append(huge[:len(huge)-1], `,"pad":"`+strings.Repeat("x", maxRecordedManifest)+`"}`...)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/base/oci/manifests/v1":
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.Write(ociManifest)
		case "/v2/base/docker/manifests/v1":
			w.Header().Set("Content-Type", string(types.DockerManifestSchema2)+"; charset=utf-8")
			w.Write(dockerManifest)
		case "/v2/base/index/manifests/v1":
			w.Header().Set("Content-Type", string(types.OCIImageIndex))
			w.Write(index)
		case "/v2/base/json/manifests/v1":
			w.Header().Set("Content-Type", "application/json")
			w.Write(ociManifest)
		case "/v2/base/huge/manifests/v1":
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.Write(huge)
		case "/v2/base/missing/manifests/v1":
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.WriteHeader(http.StatusNotFound)
			w.Write(ociManifest)
		case "/v2/base/blob/blobs/" + blob:
			w.Write([]byte("blob"))
		case "/v2/base/redirect/blobs/" + blob:
			http.Redirect(w, r, "/storage/"+blob, http.StatusTemporaryRedirect)
		case "/storage/" + blob:
			w.Write([]byte("blob"))
		case "/v2/base/gone/blobs/" + blob:
			w.WriteHeader(http.StatusNotFound)
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		name     string
		method   string
		path     string
		wantBody []byte // nil: not checked
		want     map[string][]string
	}{
		{name: "OCI manifest", method: "GET", path: "/v2/base/oci/manifests/v1", wantBody: ociManifest,
			want: map[string][]string{cfg: {host + "/base/oci"}, l1: {host + "/base/oci"}, l2: {host + "/base/oci"}}},
		{name: "Docker manifest", method: "GET", path: "/v2/base/docker/manifests/v1", wantBody: dockerManifest,
			want: map[string][]string{cfg: {host + "/base/docker"}, l1: {host + "/base/docker"}}},
		{name: "index", method: "GET", path: "/v2/base/index/manifests/v1", wantBody: index},
		{name: "unknown content type", method: "GET", path: "/v2/base/json/manifests/v1", wantBody: ociManifest},
		{name: "too big to keep", method: "GET", path: "/v2/base/huge/manifests/v1", wantBody: huge},
		{name: "404 manifest", method: "GET", path: "/v2/base/missing/manifests/v1", wantBody: ociManifest},
		{name: "HEAD manifest", method: "HEAD", path: "/v2/base/oci/manifests/v1"},
		{name: "blob", method: "GET", path: "/v2/base/blob/blobs/" + blob, wantBody: []byte("blob"),
			want: map[string][]string{blob: {host + "/base/blob"}}},
		{name: "redirected blob", method: "GET", path: "/v2/base/redirect/blobs/" + blob, wantBody: []byte("blob"),
			want: map[string][]string{blob: {host + "/base/redirect"}}},
		{name: "404 blob", method: "GET", path: "/v2/base/gone/blobs/" + blob},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			s := newBlobSources(root)
			c := withSourceRecorder(withPullRetry(&http.Client{}, 0), s)
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body changed on its way through: got %d bytes, want %d", len(body), len(tc.wantBody))
			}
			got := map[string][]string{}
			for _, e := range readBlobSources(filepath.Join(root, BlobSourcesFile)) {
				got[e.Digest] = e.Sources
			}
			want := tc.want
			if want == nil {
				want = map[string][]string{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("recorded sources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSourceNameDockerHub(t *testing.T) {
	t.Parallel()
	if got := sourceName("registry-1.docker.io", "library/debian"); got != "docker.io/library/debian" {
		t.Errorf("got %q", got)
	}
	if got := sourceName("127.0.0.1:5000", "base/debian"); got != "127.0.0.1:5000/base/debian" {
		t.Errorf("got %q", got)
	}
}

func TestBlobSourcesPersistence(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	path := filepath.Join(root, BlobSourcesFile)
	s := newBlobSources(root)
	d := digestOf("shared")
	for _, src := range []string{"reg/a", "reg/b", "reg/c", "reg/d", "reg/c"} {
		s.record(src, d)
	}
	// A later owner reads what the first one wrote.
	h, _ := v1.NewHash(d)
	got := newBlobSources(root).lookup([]v1.Hash{h})
	if diff := cmp.Diff(map[v1.Hash][]string{h: {"reg/c", "reg/d", "reg/b"}}, got); diff != "" {
		t.Errorf("sources of one blob, newest first and at most %d (-want +got):\n%s", maxBlobSources, diff)
	}

	// Past the bound, the blobs seen least recently go.
	first := digestOf("0")
	s.record("reg/x", first)
	var more []string
	for i := 1; i < maxBlobSourceDigests; i++ {
		more = append(more, digestOf(fmt.Sprint(i)))
	}
	s.record("reg/x", more...)           // d goes
	s.record("reg/y", first)             // seen again: now the newest
	s.record("reg/x", digestOf("extra")) // digestOf("1") goes
	entries := readBlobSources(path)
	if len(entries) != maxBlobSourceDigests {
		t.Fatalf("%d records kept, want %d", len(entries), maxBlobSourceDigests)
	}
	if entries[0].Digest != digestOf("extra") {
		t.Errorf("newest record is %v, want %s", entries[0], digestOf("extra"))
	}
	if entries[1].Digest != first || !cmp.Equal(entries[1].Sources, []string{"reg/y", "reg/x"}) {
		t.Errorf("second newest record is %v, want %s from reg/y and reg/x", entries[1], first)
	}
	for _, gone := range []string{d, digestOf("1")} {
		for _, e := range entries {
			if e.Digest == gone {
				t.Errorf("record of %s kept past the bound", gone)
			}
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records: %d bytes", len(entries), fi.Size())
	if matches, _ := filepath.Glob(filepath.Join(root, ".*tmp*")); len(matches) > 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}

func TestBlobSourcesBadFile(t *testing.T) {
	t.Parallel()
	d := digestOf("x")
	h, _ := v1.NewHash(d)
	for name, content := range map[string]string{
		"missing":   "",
		"corrupt":   `{"blobs":[{"digest":`,
		"not json":  "\x00\x01",
		"bad entry": `{"blobs":[{"digest":"nope","sources":["reg/a"]},{"digest":"` + d + `","sources":[]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if content != "" {
				if err := os.WriteFile(filepath.Join(root, BlobSourcesFile), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := newBlobSources(root)
			if got := s.lookup([]v1.Hash{h}); len(got) != 0 {
				t.Errorf("lookup = %v, want nothing", got)
			}
			s.record("reg/a", d)
			if got := lookupBlobSources(root, []v1.Hash{h}); !cmp.Equal(got, map[v1.Hash][]string{h: {"reg/a"}}) {
				t.Errorf("after recording: %v", got)
			}
		})
	}
}
