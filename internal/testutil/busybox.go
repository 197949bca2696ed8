package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxBinary is the static busybox from Debian's busybox-static package.
const BusyboxBinary = "/bin/busybox"

// BusyboxPath is the PATH set in the busybox image's config.
const BusyboxPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// busyboxTime is the mtime of every file and the image's creation time, so
// the same busybox binary always yields the same digest.
var busyboxTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// The image is built once per process: compressing busybox takes a while
// and v1.Image values are immutable, so callers can share it.
var busybox = sync.OnceValues(buildBusyboxImage)

// BusyboxImage returns a single-layer OCI image for runtime.GOARCH built
// from the host's static busybox: /bin/busybox, a /bin/<applet> symlink for
// every applet, /etc/passwd and /etc/group with root, nobody (65534) and app
// (1000, home /home/app), a 1777 /tmp, and empty /dev, /proc and /sys. Its config sets PATH and Cmd ["sh"]. Timestamps
// are fixed, so the digest only changes with the busybox binary.
func BusyboxImage() (v1.Image, error) {
	return busybox()
}

func buildBusyboxImage() (v1.Image, error) {
	layer, err := busyboxLayer()
	if err != nil {
		return nil, fmt.Errorf("building busybox layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: busyboxTime},
			CreatedBy: "imgbuild testutil: busybox from Debian busybox-static",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("appending busybox layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading busybox config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.Created = v1.Time{Time: busyboxTime}
	cfg.Config.Env = []string{BusyboxPath}
	cfg.Config.Cmd = []string{"sh"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("setting busybox config: %w", err)
	}
	return img, nil
}

// busyboxLayer builds the layer tarball in memory and gzips it once; ggcr
// would otherwise recompress it every time the layer is read.
func busyboxLayer() (v1.Layer, error) {
	bin, err := os.ReadFile(BusyboxBinary)
	if err != nil {
		return nil, fmt.Errorf("reading busybox (install busybox-static): %w", err)
	}
	applets, err := busyboxApplets()
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no header mtime or name: deterministic
	tw := tar.NewWriter(zw)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime = busyboxTime
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("writing %s: %w", h.Name, err)
		}
		if _, err := tw.Write(body); err != nil {
			return fmt.Errorf("writing %s: %w", h.Name, err)
		}
		return nil
	}
	dir := func(name string, mode int64, uid int) error {
		return add(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid}, nil)
	}
	file := func(name string, mode int64, body string) error {
		return add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, []byte(body))
	}

	steps := []func() error{
		func() error { return dir("bin/", 0o755, 0) },
		func() error { return add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755}, bin) },
		func() error {
			for _, a := range applets {
				if err := add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return dir("etc/", 0o755, 0) },
		func() error {
			return file("etc/group", 0o644, "root:x:0:\napp:x:1000:\nnobody:x:65534:\n")
		},
		func() error {
			return file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"+
				"app:x:1000:1000:app:/home/app:/bin/sh\n"+
				"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
		},
		// Mount points runc would otherwise create, and leave in the first
		// RUN layer of every build on this image.
		func() error { return dir("dev/", 0o755, 0) },
		func() error { return dir("proc/", 0o555, 0) },
		func() error { return dir("sys/", 0o555, 0) },
		func() error { return dir("home/", 0o755, 0) },
		func() error { return dir("home/app/", 0o755, 1000) },
		func() error { return dir("root/", 0o700, 0) },
		func() error { return dir("tmp/", 0o1777, 0) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing layer tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	gz := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("reading layer: %w", err)
	}
	return plainLayer{l}, nil
}

// plainLayer hides the tarball layer's Descriptor method, whose empty (not
// nil) Annotations map makes the in-memory manifest differ from its JSON
// round trip, so validate.Image would reject the unpushed image.
type plainLayer struct{ v1.Layer }

// busyboxApplets lists the applets the host busybox was built with, sorted
// so the layer does not depend on busybox's output order.
func busyboxApplets() ([]string, error) {
	out, err := exec.Command(BusyboxBinary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("listing busybox applets: %s --list printed none", BusyboxBinary)
	}
	sort.Strings(applets)
	return applets, nil
}

// ParseRef parses an image reference, allowing plain HTTP for registries on
// loopback (127.0.0.0/8, ::1, localhost), where test registries run.
func ParseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	if isLoopback(r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
		}
	}
	return r, nil
}

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Push pushes img to ref with the default keychain (plain HTTP for
// loopback registries).
func Push(ctx context.Context, ref string, img v1.Image) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	p, err := remote.NewPusher(remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return fmt.Errorf("creating pusher: %w", err)
	}
	if err := p.Push(ctx, r, img); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// PushBusybox pushes [BusyboxImage] to registryAddr as
// ADDR/busybox:latest and returns that reference.
func PushBusybox(ctx context.Context, registryAddr string) (string, error) {
	img, err := BusyboxImage()
	if err != nil {
		return "", err
	}
	ref := registryAddr + "/busybox:latest"
	if err := Push(ctx, ref, img); err != nil {
		return "", err
	}
	return ref, nil
}
