package cmd

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// zeroLayer is a gzip layer holding one file of size zero bytes, which
// compresses about 1000:1: a decompression bomb at scale.
func zeroLayer(t *testing.T, file string, size int64) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := tw.WriteHeader(&tar.Header{Name: file, Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
			if err == nil {
				_, err = io.CopyN(tw, zeros{}, size)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// hostileBase pushes busybox plus layers, changed by edit, to a fresh repo
// of the test registry and returns its reference.
func hostileBase(t *testing.T, e e2e, repo string, layers []v1.Layer, edit func(v1.Image) v1.Image) string {
	t.Helper()
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		img = edit(img)
	}
	ref := fmt.Sprintf("%s/e2e/hostile-%s:v1", e.registry, repo)
	if err := testutil.Push(context.Background(), ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func layerDigest(t *testing.T, l v1.Layer) string {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// filesNamed lists the paths under root whose base name is base.
func filesNamed(t *testing.T, root, base string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == base {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestLimitsHostileBaseImages builds FROM images made to exhaust the builder:
// a layer that expands 1000:1, layers that together pass the image bound, a
// huge manifest, a huge config and too many layers. Each build fails naming
// the layer or manifest and the limit, pushes nothing, and leaves no part of
// a refused layer in the state dir.
func TestLimitsHostileBaseImages(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const mb = 1 << 20
	bomb := zeroLayer(t, "bomb", 50*mb)
	big := []v1.Layer{zeroLayer(t, "big1", 8*mb), zeroLayer(t, "big2", 8*mb), zeroLayer(t, "big3", 8*mb)}
	var small []v1.Layer
	for i := range 5 {
		small = append(small, zeroLayer(t, fmt.Sprintf("small%d", i), 1))
	}

	for _, tc := range []struct {
		name   string
		base   func() string
		flags  []string
		want   []string
		absent string // a file of the refused layer, not to be found in the state dir
		again  bool   // a second build on the same state dir fails the same way
	}{{
		name:   "gzip bomb",
		base:   func() string { return hostileBase(t, e, "bomb", []v1.Layer{bomb}, nil) },
		flags:  []string{"--max-layer-size", "10MB"},
		want:   []string{"layer " + layerDigest(t, bomb), "layer size limit of 10MiB", "--max-layer-size"},
		absent: "bomb",
	}, {
		name:   "image total",
		base:   func() string { return hostileBase(t, e, "total", big, nil) },
		flags:  []string{"--max-layer-size", "10MB", "--max-image-size", "20MB"},
		want:   []string{"layer " + layerDigest(t, big[2]), "image size limit of 20MiB", "--max-image-size"},
		absent: "big3",
		again:  true,
	}, {
		// The native snapshotter's mounts are a plain copy of the parent.
		name:   "image total native",
		base:   func() string { return hostileBase(t, e, "total", big, nil) },
		flags:  []string{"--snapshotter", "native", "--max-layer-size", "10MB", "--max-image-size", "20MB"},
		want:   []string{"layer " + layerDigest(t, big[2]), "image size limit of 20MiB", "--max-image-size"},
		absent: "big3",
		again:  true,
	}, {
		name: "huge manifest",
		base: func() string {
			return hostileBase(t, e, "manifest", nil, func(img v1.Image) v1.Image {
				return mutate.Annotations(img, map[string]string{"padding": strings.Repeat("x", 100<<10)}).(v1.Image)
			})
		},
		flags: []string{"--max-manifest-size", "64KB"},
		want:  []string{"manifest " + e.registry + "/e2e/hostile-manifest", "manifest size limit of 64KiB", "--max-manifest-size"},
	}, {
		name: "huge config",
		base: func() string {
			return hostileBase(t, e, "config", nil, func(img v1.Image) v1.Image {
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				cf = cf.DeepCopy()
				cf.Config.Env = append(cf.Config.Env, "PADDING="+strings.Repeat("x", 100<<10))
				img, err = mutate.ConfigFile(img, cf)
				if err != nil {
					t.Fatal(err)
				}
				return img
			})
		},
		flags: []string{"--max-config-size", "64KB"},
		want:  []string{"config sha256:", e.registry + "/e2e/hostile-config", "config size limit of 64KiB", "--max-config-size"},
	}, {
		name:  "too many layers",
		base:  func() string { return hostileBase(t, e, "layers", small, nil) },
		flags: []string{"--max-layers", "3"},
		want:  []string{"manifest " + e.registry + "/e2e/hostile-layers", "6 layers", "layer count limit of 3", "--max-layers"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			base := tc.base()
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo built > /built\n"})
			tag := fmt.Sprintf("%s/e2e/hostile-out-%s:v1", e.registry, strings.ReplaceAll(tc.name, " ", "-"))
			runs := 1
			if tc.again {
				runs = 2
			}
			for range runs {
				r := e.build(t, root, append([]string{"-t", tag, "--push"}, append(tc.flags, dir)...)...)
				if r.code == 0 {
					t.Fatalf("build FROM %s succeeded", base)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr lacks %q", w)
					}
				}
			}
			ref, err := name.ParseReference(tag)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Head(ref); err == nil {
				t.Errorf("%s was pushed", tag)
			}
			if tc.absent != "" {
				if left := filesNamed(t, root, tc.absent); len(left) > 0 {
					t.Errorf("the refused layer's %s is left in the state dir: %v", tc.absent, left)
				}
			}
		})
	}

	// The same images build within the limits, and the defaults let them.
	t.Run("within limits", func(t *testing.T) {
		root := t.TempDir()
		base := hostileBase(t, e, "total", big, nil)
		dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo built > /built\n"})
		for _, flags := range [][]string{{"--max-layer-size", "10MB", "--max-image-size", "40MB"}, {"--no-cache"}} {
			if r := e.build(t, root, append(flags, dir)...); r.code != 0 {
				t.Fatalf("build with %v: exit %d", flags, r.code)
			}
		}
	})
}
