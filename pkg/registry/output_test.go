package registry

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// layoutEntry is what a test cares about in one index.json descriptor.
type layoutEntry struct {
	Digest      string
	Annotations map[string]string
}

// readLayout validates the layout at dir and every image in it, and returns
// its index entries.
func readLayout(t *testing.T, dir string) []layoutEntry {
	t.Helper()
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var entries []layoutEntry
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("validate.Image(%s): %v", d.Digest, err)
		}
		entries = append(entries, layoutEntry{Digest: d.Digest.String(), Annotations: d.Annotations})
	}
	return entries
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestWriteOCILayout(t *testing.T) {
	t.Parallel()
	img1, img2 := randomImage(t), randomImage(t)
	d1, d2 := digestOf(t, img1), digestOf(t, img2)
	dir := filepath.Join(t.TempDir(), "layout")

	steps := []struct {
		name string
		img  v1.Image
		refs []name.Reference
		want []layoutEntry
	}{{
		name: "new layout",
		img:  img1,
		refs: mustRefs(t, "reg.example.com/app:v1", "alpine:3"),
		want: []layoutEntry{
			{d1, map[string]string{AnnotationRefName: "v1", AnnotationImageName: "reg.example.com/app:v1"}},
			{d1, map[string]string{AnnotationRefName: "3", AnnotationImageName: "docker.io/library/alpine:3"}},
		},
	}, {
		name: "append keeps both",
		img:  img2,
		refs: mustRefs(t, "reg.example.com/app:v2"),
		want: []layoutEntry{
			{d1, map[string]string{AnnotationRefName: "v1", AnnotationImageName: "reg.example.com/app:v1"}},
			{d1, map[string]string{AnnotationRefName: "3", AnnotationImageName: "docker.io/library/alpine:3"}},
			{d2, map[string]string{AnnotationRefName: "v2", AnnotationImageName: "reg.example.com/app:v2"}},
		},
	}, {
		name: "retagging moves the name",
		img:  img2,
		refs: mustRefs(t, "reg.example.com/app:v1"),
		want: []layoutEntry{
			{d1, map[string]string{AnnotationRefName: "3", AnnotationImageName: "docker.io/library/alpine:3"}},
			{d2, map[string]string{AnnotationRefName: "v2", AnnotationImageName: "reg.example.com/app:v2"}},
			{d2, map[string]string{AnnotationRefName: "v1", AnnotationImageName: "reg.example.com/app:v1"}},
		},
	}, {
		name: "untagged",
		img:  img1,
		want: []layoutEntry{
			{d1, map[string]string{AnnotationRefName: "3", AnnotationImageName: "docker.io/library/alpine:3"}},
			{d2, map[string]string{AnnotationRefName: "v2", AnnotationImageName: "reg.example.com/app:v2"}},
			{d2, map[string]string{AnnotationRefName: "v1", AnnotationImageName: "reg.example.com/app:v1"}},
			{Digest: d1},
		},
	}}
	for _, s := range steps {
		if err := WriteOCILayout(dir, s.img, s.refs); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, readLayout(t, dir)); diff != "" {
			t.Errorf("%s: index.json entries (-want +got):\n%s", s.name, diff)
		}
	}
}

// TestWriteAtomic checks that a write failing half-way through a layer
// leaves nothing at the destination and no temporary file behind.
func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	broken := brokenImage{randomImage(t)}
	refs := mustRefs(t, "reg.example.com/app:v1")
	for _, tc := range []struct {
		name  string
		write func(dst string) error
	}{
		{"oci layout", func(dst string) error { return WriteOCILayout(dst, broken, refs) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			err := tc.write(filepath.Join(parent, "out"))
			if !errors.Is(err, errBrokenLayer) {
				t.Fatalf("write error = %v, want %v", err, errBrokenLayer)
			}
			entries, err := os.ReadDir(parent)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("left behind: %s", e.Name())
			}
		})
	}

	t.Run("append to oci layout", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "layout")
		good := randomImage(t)
		if err := WriteOCILayout(dir, good, refs); err != nil {
			t.Fatal(err)
		}
		before := readLayout(t, dir)
		if err := WriteOCILayout(dir, broken, mustRefs(t, "reg.example.com/app:v2")); !errors.Is(err, errBrokenLayer) {
			t.Fatalf("write error = %v, want %v", err, errBrokenLayer)
		}
		if diff := cmp.Diff(before, readLayout(t, dir)); diff != "" {
			t.Errorf("failed append changed the layout (-before +after):\n%s", diff)
		}
		// No partial blob may be left where a later write would trust it.
		matches, err := filepath.Glob(filepath.Join(dir, "blobs", "sha256", ".*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(matches) != 0 {
			t.Errorf("temporary files left behind: %v", matches)
		}
	})
}
