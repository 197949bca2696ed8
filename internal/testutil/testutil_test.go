package testutil

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func requireBusybox(t *testing.T) {
	t.Helper()
	_, err := busyboxApplets()
	Require(t, err == nil, "busybox-static: %v", err)
}

func TestBusyboxImage(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	// A second, uncached build must give the same digest.
	again, err := buildBusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	d1, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := again.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("digest not deterministic: %s then %s", d1, d2)
	}
	checkBusybox(t, img)
}

func TestStartRegistryPushBusybox(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	addr := StartRegistry(t)

	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}

	ref, err := PushBusybox(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if want := addr + "/busybox:latest"; ref != want {
		t.Errorf("PushBusybox() = %q, want %q", ref, want)
	}
	r, err := ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("remote.Get: %v", err)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("media type = %s, want %s", desc.MediaType, types.OCIManifestSchema1)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image of pulled image: %v", err)
	}
	local, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := local.Digest(); desc.Digest != want {
		t.Errorf("pulled digest %s, pushed %s", desc.Digest, want)
	}
	checkBusybox(t, img)
}

// checkBusybox checks the config and the layer's files.
func checkBusybox(t *testing.T, img v1.Image) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if diff := cmp.Diff([]string{BusyboxPath}, cfg.Config.Env); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"sh"}, cfg.Config.Cmd); diff != "" {
		t.Errorf("Cmd (-want +got):\n%s", diff)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	if mt, err := layers[0].MediaType(); err != nil || mt != types.OCILayer {
		t.Errorf("layer media type = %s, %v; want %s", mt, err, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = fmt.Sprintf("%c %o %d %s", h.Typeflag, h.Mode, h.Uid, h.Linkname)
	}
	for name, want := range map[string]string{
		"bin/busybox": "0 755 0 ",
		"bin/sh":      "2 777 0 busybox",
		"bin/echo":    "2 777 0 busybox",
		"bin/ls":      "2 777 0 busybox",
		"etc/passwd":  "0 644 0 ",
		"etc/group":   "0 644 0 ",
		"tmp/":        "5 1777 0 ",
		"home/app/":   "5 755 1000 ",
	} {
		if got[name] != want {
			t.Errorf("layer entry %s = %q, want %q", name, got[name], want)
		}
	}
}

// fakeTB records Skipf/Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		ci          string
		ok          bool
		wantSkipped bool
		wantFailed  bool
	}{
		{ci: "", ok: true},
		{ci: "true", ok: true},
		{ci: "", ok: false, wantSkipped: true},
		{ci: "false", ok: false, wantSkipped: true},
		{ci: "true", ok: false, wantFailed: true},
	} {
		t.Run(fmt.Sprintf("CI=%q,ok=%v", tc.ci, tc.ok), func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{}
			Require(f, tc.ok, "thing %d", 1)
			if f.skipped != tc.wantSkipped || f.failed != tc.wantFailed {
				t.Errorf("skipped=%v failed=%v, want skipped=%v failed=%v", f.skipped, f.failed, tc.wantSkipped, tc.wantFailed)
			}
		})
	}
}

func TestStartSharedRegistry(t *testing.T) {
	t.Parallel()
	Require(t, registryBinary() != "", "docker-registry not installed")
	addr, stop, err := StartSharedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/v2/"); err == nil {
		t.Errorf("registry on %s still answers after stop", addr)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3": true, "localhost:5000": true, "[::1]:5000": true,
		"10.0.0.1:5000": false, "example.com": false, "index.docker.io": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
