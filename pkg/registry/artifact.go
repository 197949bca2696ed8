package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// EmptyConfigMediaType is the media type of OCI 1.1's empty descriptor,
// the config of an artifact that has none (image-spec manifest.md,
// "Guidelines for Artifact Usage").
const EmptyConfigMediaType types.MediaType = "application/vnd.oci.empty.v1+json"

// emptyConfig is the empty descriptor's content.
var emptyConfig = []byte("{}")

// ErrNotFound is returned when the registry has no manifest under a
// reference.
var ErrNotFound = errors.New("no manifest under this reference")

// Artifact is an OCI 1.1 artifact: an image manifest with an artifactType,
// the empty config and blobs (its layers), each with annotations.
//
// References: https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md
type Artifact struct {
	// ArtifactType is the manifest's artifactType. Required.
	ArtifactType string
	// Annotations are the manifest's annotations. The default is none.
	Annotations map[string]string
	// Blobs are the layers, in order. The default is none.
	Blobs []Blob
}

// Blob is one layer of an [Artifact].
type Blob struct {
	MediaType   types.MediaType
	Digest      v1.Hash
	Size        int64
	Annotations map[string]string
	// Open returns the blob's content. It is only called for a blob the
	// registry does not have yet.
	Open func() (io.ReadCloser, error)
}

// PushArtifact pushes a under ref, uploading only the blobs ref's
// repository lacks, and returns the manifest digest.
//
// ref may have other writers at the same time (caches that several builds
// export at once): blobs are content-addressed, so concurrent uploads of one
// blob do not conflict, and the manifest PUT is last-writer-wins. Unlike
// [Pusher.Push], reading the tag back accepts another writer's manifest.
func (p *Pusher) PushArtifact(ctx context.Context, a *Artifact, ref name.Reference) (v1.Hash, error) {
	img, err := a.image()
	if err != nil {
		return v1.Hash{}, err
	}
	// distribution 2.8 races when one blob is uploaded twice at once: one
	// upload can end in DIGEST_INVALID and the manifest that needs it in
	// MANIFEST_BLOB_UNKNOWN. Pushing again finds the blob stored.
	for attempt := 1; ; attempt++ {
		h, err := p.pushShared(ctx, img, []name.Reference{ref})
		if err == nil || attempt == 3 || !concurrentUploadRace(err) || ctx.Err() != nil {
			return h, err
		}
	}
}

// concurrentUploadRace reports whether err is a registry's answer to a blob
// that another writer uploaded at the same time.
func concurrentUploadRace(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.DigestInvalidErrorCode, transport.ManifestBlobUnknownErrorCode, transport.BlobUnknownErrorCode:
			return true
		}
	}
	return false
}

// PullArtifact returns the image manifest ref names and its digest. A
// reference the registry has no manifest for is [ErrNotFound].
func (p *Pusher) PullArtifact(ctx context.Context, ref name.Reference) (*v1.Manifest, v1.Hash, error) {
	ref, err := withInsecure(ref, p.insecure)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	desc, err := p.puller.Get(ctx, ref)
	if err != nil {
		if notFound(err) {
			return nil, v1.Hash{}, fmt.Errorf("pulling %s: %w", ref, ErrNotFound)
		}
		return nil, v1.Hash{}, stepError(ref.Context(), fmt.Sprintf("pulling %s", ref), err)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		return nil, v1.Hash{}, fmt.Errorf("pulling %s: it is a %s, not an OCI image manifest", ref, desc.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("pulling %s: %w", ref, err)
	}
	return m, desc.Digest, nil
}

// OpenBlob returns the blob d of repo. Reading it to the end checks its
// digest.
func (p *Pusher) OpenBlob(ctx context.Context, repo name.Repository, d v1.Hash) (io.ReadCloser, error) {
	ref, err := withInsecure(repo.Digest(d.String()), p.insecure)
	if err != nil {
		return nil, err
	}
	l, err := p.puller.Layer(ctx, ref.(name.Digest))
	if err != nil {
		return nil, stepError(repo, fmt.Sprintf("pulling blob %s", d), err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, stepError(repo, fmt.Sprintf("pulling blob %s", d), err)
	}
	return rc, nil
}

// notFound reports whether err is the registry saying it has no such
// manifest or repository.
func notFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// image makes a a v1.Image, the form [Pusher] pushes.
func (a *Artifact) image() (v1.Image, error) {
	if a.ArtifactType == "" {
		return nil, errors.New("artifact without an artifactType")
	}
	cfg := v1.Descriptor{MediaType: EmptyConfigMediaType, Size: int64(len(emptyConfig)), Data: emptyConfig}
	var err error
	if cfg.Digest, _, err = v1.SHA256(bytes.NewReader(emptyConfig)); err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  a.ArtifactType,
		Config:        cfg,
		Annotations:   a.Annotations,
	}
	core := &artifactImage{config: cfg.Digest, blobs: map[v1.Hash]Blob{}}
	for _, b := range a.Blobs {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: b.MediaType, Size: b.Size, Digest: b.Digest, Annotations: b.Annotations})
		core.blobs[b.Digest] = b
	}
	// Layers is required by image-spec even when empty.
	if m.Layers == nil {
		m.Layers = []v1.Descriptor{}
	}
	if core.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(core)
}

// artifactImage is an [Artifact] as a partial.CompressedImageCore.
type artifactImage struct {
	manifest []byte
	config   v1.Hash
	blobs    map[v1.Hash]Blob
}

var _ partial.CompressedImageCore = (*artifactImage)(nil)

// RawConfigFile implements partial.CompressedImageCore.
func (a *artifactImage) RawConfigFile() ([]byte, error) { return emptyConfig, nil }

// MediaType implements partial.CompressedImageCore.
func (a *artifactImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// RawManifest implements partial.CompressedImageCore.
func (a *artifactImage) RawManifest() ([]byte, error) { return a.manifest, nil }

// LayerByDigest implements partial.CompressedImageCore.
func (a *artifactImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == a.config {
		return &artifactBlob{Blob: Blob{MediaType: EmptyConfigMediaType, Digest: h, Size: int64(len(emptyConfig)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(emptyConfig)), nil }}}, nil
	}
	b, ok := a.blobs[h]
	if !ok {
		return nil, fmt.Errorf("artifact has no blob %s", h)
	}
	return &artifactBlob{Blob: b}, nil
}

// artifactBlob is a [Blob] as a partial.CompressedLayer.
type artifactBlob struct{ Blob }

var _ partial.CompressedLayer = (*artifactBlob)(nil)

// Digest implements partial.CompressedLayer.
func (b *artifactBlob) Digest() (v1.Hash, error) { return b.Blob.Digest, nil }

// Compressed implements partial.CompressedLayer.
func (b *artifactBlob) Compressed() (io.ReadCloser, error) {
	if b.Open == nil {
		return nil, fmt.Errorf("blob %s has no content", b.Blob.Digest)
	}
	return b.Open()
}

// Size implements partial.CompressedLayer.
func (b *artifactBlob) Size() (int64, error) { return b.Blob.Size, nil }

// MediaType implements partial.CompressedLayer.
func (b *artifactBlob) MediaType() (types.MediaType, error) { return b.Blob.MediaType, nil }
