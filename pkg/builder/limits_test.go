//go:build linux

package builder

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLimitsResolved(t *testing.T) {
	t.Parallel()
	got := Limits{LayerSize: 5, ImageSize: NoLimit, Layers: NoLimit}.resolved()
	want := Limits{LayerSize: 5, ImageSize: 0, ManifestSize: DefaultLimits.ManifestSize, ConfigSize: DefaultLimits.ConfigSize, Layers: 0}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("resolved (-want +got):\n%s", d)
	}
	if err := WithLimits(Limits{ConfigSize: -2})(&options{}); err == nil {
		t.Error("WithLimits accepted a negative bound")
	}
}

// TestLimitTransport serves manifests and configs over and under the
// limits and checks which the transport refuses, and that the error names
// the manifest and reads back as its limit.
func TestLimitTransport(t *testing.T) {
	t.Parallel()
	manifest := func(layers int, configSize int) string {
		ls := strings.TrimSuffix(strings.Repeat(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1},`, layers), ",")
		return fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}`,
			strings.Repeat("c", 64), configSize, ls)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/repo/manifests/few":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			io.WriteString(w, manifest(2, 100))
		case "/v2/repo/manifests/many":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			io.WriteString(w, manifest(4, 100))
		case "/v2/repo/manifests/bigconfig":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			io.WriteString(w, manifest(1, 5000))
		case "/v2/repo/manifests/huge":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			// Chunked: no Content-Length to refuse it by.
			w.(http.Flusher).Flush()
			io.WriteString(w, manifest(1, 1)+strings.Repeat(" ", 5000))
		default:
			io.WriteString(w, strings.Repeat("x", 5000)) // a blob
		}
	}))
	defer srv.Close()
	c := withLimits(srv.Client(), Limits{ManifestSize: 4096, ConfigSize: 1024, Layers: 3})
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		path, accept string
		want         LimitKind // "" when allowed
		subject      string
	}{
		{path: "/v2/repo/manifests/few"},
		{path: "/v2/repo/manifests/many", want: LimitLayers, subject: "manifest " + host + "/repo:many: 4 layers"},
		{path: "/v2/repo/manifests/bigconfig", want: LimitConfigSize, subject: "config sha256:" + strings.Repeat("c", 64)},
		{path: "/v2/repo/manifests/huge", want: LimitManifestSize, subject: "manifest " + host + "/repo:huge"},
		{path: "/v2/repo/blobs/sha256:" + strings.Repeat("c", 64), accept: "application/vnd.oci.image.config.v1+json, */*", want: LimitConfigSize},
		{path: "/v2/repo/blobs/sha256:" + strings.Repeat("a", 64), accept: "application/vnd.oci.image.layer.v1.tar+gzip, */*"},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		var got LimitKind
		if err != nil {
			be := buildError(fmt.Errorf("failed to solve: %w", err), "Dockerfile").(*BuildError) //nolint:errorlint // buildError returns the *BuildError itself
			got = be.Limit
			if got == "" {
				t.Errorf("%s: %v, not a limit error", tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.subject) {
				t.Errorf("%s: %v, want it to name %q", tc.path, err, tc.subject)
			}
		}
		if got != tc.want {
			t.Errorf("%s: limit %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestDiskFull(t *testing.T) {
	t.Parallel()
	if !diskFull(t.TempDir(), fmt.Errorf("copying: %w", syscall.ENOSPC)) {
		t.Error("ENOSPC is not a full disk")
	}
	if !diskFull(t.TempDir(), errors.New("rpc error: write /x: no space left on device")) {
		t.Error("ENOSPC's text is not a full disk")
	}
	if diskFull(t.TempDir(), errors.New("exit code: 1")) {
		t.Error("a failed RUN on a disk with room is a full disk")
	}
}
