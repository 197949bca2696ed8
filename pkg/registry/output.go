package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// Annotations recorded on each index.json entry, as BuildKit and containerd
// write them.
const (
	// AnnotationRefName holds the tag of a reference.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName holds the full reference.
	AnnotationImageName = "io.containerd.image.name"
)

const ociLayoutFile = `{"imageLayoutVersion":"1.0.0"}`

// WriteOCILayout writes img as an OCI image layout directory at dir, creating
// it, or adding img to the layout already there. Each ref becomes one
// index.json entry annotated with its tag and full name; an existing entry
// with the same full name is replaced, as a registry moves a tag. With no refs
// the entry has no annotations.
//
// A new layout is written to a temporary directory next to dir and renamed
// into place. When appending, blobs are written to temporary files and renamed,
// and index.json is replaced last, so a failure never leaves the layout
// pointing at missing or partial content.
func WriteOCILayout(dir string, img v1.Image, refs []name.Reference) error {
	blobs, desc, err := imageBlobs(img)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0:
		return writeNewLayout(dir, blobs, desc, refs)
	case err != nil:
		return fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return fmt.Errorf("appending to OCI layout %s: not an OCI layout: %w", dir, err)
	}
	for _, b := range blobs {
		if err := writeBlobFile(dir, b); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", dir, err)
		}
	}
	old, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return fmt.Errorf("appending to OCI layout %s: %w", dir, err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(old))
	if err != nil {
		return fmt.Errorf("appending to OCI layout %s: parsing index.json: %w", dir, err)
	}
	b, err := indexJSON(idx, desc, refs)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteSynced(filepath.Join(dir, "index.json"), 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return fmt.Errorf("appending to OCI layout %s: %w", dir, err)
	}
	return nil
}

func writeNewLayout(dir string, blobs []blob, desc v1.Descriptor, refs []name.Reference) (err error) {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	for _, b := range blobs {
		if err := writeBlobFile(tmp, b); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", dir, err)
		}
	}
	index, err := indexJSON(nil, desc, refs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.json"), index, 0o644); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "oci-layout"), []byte(ociLayoutFile), 0o644); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	// rename(2) replaces an empty directory, so an empty dir is also fine.
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	return nil
}

// blob is one content-addressed file of a layout.
type blob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// imageBlobs lists img's blobs (layers, config, manifest; each once) and the
// descriptor of its manifest.
func imageBlobs(img v1.Image) ([]blob, v1.Descriptor, error) {
	var blobs []blob
	seen := map[v1.Hash]bool{}
	add := func(b blob) {
		if !seen[b.digest] {
			seen[b.digest] = true
			blobs = append(blobs, b)
		}
	}
	inMemory := func(data []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}

	layers, err := img.Layers()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading image layers: %w", err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, v1.Descriptor{}, fmt.Errorf("reading layer digest: %w", err)
		}
		size, err := l.Size()
		if err != nil {
			return nil, v1.Descriptor{}, fmt.Errorf("reading size of layer %s: %w", d, err)
		}
		add(blob{digest: d, size: size, open: l.Compressed})
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading image config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading image config digest: %w", err)
	}
	add(blob{digest: cfgName, size: int64(len(cfg)), open: inMemory(cfg)})

	raw, err := img.RawManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading image manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading image media type: %w", err)
	}
	d, size, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("computing manifest digest: %w", err)
	}
	add(blob{digest: d, size: size, open: inMemory(raw)})
	return blobs, v1.Descriptor{MediaType: mt, Size: size, Digest: d}, nil
}

// indexJSON returns idx (or a new index) with desc added once per ref.
// Entries carrying the same full name as a new one are dropped first, and an
// unannotated entry is not duplicated.
func indexJSON(idx *v1.IndexManifest, desc v1.Descriptor, refs []name.Reference) ([]byte, error) {
	if idx == nil {
		idx = &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	}
	var add []v1.Descriptor
	for _, ref := range refs {
		d := desc
		d.Annotations = map[string]string{AnnotationImageName: fullName(ref)}
		if tag, ok := ref.(name.Tag); ok {
			d.Annotations[AnnotationRefName] = tag.TagStr()
		}
		add = append(add, d)
	}
	if len(refs) == 0 {
		add = append(add, desc)
	}
	names := map[string]bool{}
	for _, d := range add {
		if n := d.Annotations[AnnotationImageName]; n != "" {
			names[n] = true
		}
	}
	kept := idx.Manifests[:0:0]
	for _, d := range idx.Manifests {
		if names[d.Annotations[AnnotationImageName]] {
			continue
		}
		if len(refs) == 0 && len(d.Annotations) == 0 && d.Digest == desc.Digest {
			continue
		}
		kept = append(kept, d)
	}
	idx.Manifests = append(kept, add...)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding index.json: %w", err)
	}
	return b, nil
}

// fullName spells ref as containerd and BuildKit do ("docker.io/library/x:y").
func fullName(ref name.Reference) string {
	n := ref.Name()
	if rest, ok := strings.CutPrefix(n, name.DefaultRegistry+"/"); ok {
		return "docker.io/" + rest
	}
	return n
}

func blobPath(d v1.Hash) string {
	return "blobs/" + d.Algorithm + "/" + d.Hex
}

// writeBlobFile writes b under layout dir through a temporary file, skipping
// blobs already present with the right size.
func writeBlobFile(dir string, b blob) error {
	path := filepath.Join(dir, filepath.FromSlash(blobPath(b.digest)))
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == b.size {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteSynced(path, 0o644, func(w io.Writer) error {
		rc, err := b.open()
		if err != nil {
			return err
		}
		defer rc.Close()
		vr := newVerifyingReader(rc, b.digest)
		n, err := io.Copy(w, vr)
		if err != nil {
			return err
		}
		if n != b.size {
			return fmt.Errorf("wrote %d bytes, want %d", n, b.size)
		}
		return vr.verify()
	}); err != nil {
		return fmt.Errorf("writing blob %s: %w", b.digest, err)
	}
	return nil
}

// verifyingReader hashes what it reads so a blob whose content does not
// match its digest is caught before the output is committed.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want v1.Hash
}

func newVerifyingReader(r io.Reader, want v1.Hash) *verifyingReader {
	h := sha256.New()
	return &verifyingReader{r: io.TeeReader(r, h), h: h, want: want}
}

func (v *verifyingReader) Read(p []byte) (int, error) { return v.r.Read(p) }

func (v *verifyingReader) verify() error {
	if v.want.Algorithm != "sha256" {
		return nil // nothing else to check against
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
		return fmt.Errorf("content has digest sha256:%s, want %s", got, v.want)
	}
	return nil
}
