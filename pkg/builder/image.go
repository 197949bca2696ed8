package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// storeImage is a v1.Image read straight from the blobs of a containerd
// "local" content store (the layout BuildKit's OCI exporter writes into:
// blobs/<alg>/<hex>), so pushing and writing outputs read each blob once from
// disk with no intermediate copy.
type storeImage struct {
	dir      string
	raw      []byte
	manifest *v1.Manifest
}

var _ partial.CompressedImageCore = (*storeImage)(nil)

func (s *storeImage) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// openImage reads the manifest dgst from the content store at dir.
func openImage(dir string, dgst v1.Hash) (v1.Image, error) {
	s := &storeImage{dir: dir}
	raw, err := os.ReadFile(s.blobPath(dgst))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", dgst, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", dgst, err)
	}
	s.raw, s.manifest = raw, &m
	return partial.CompressedToImage(s)
}

// RawConfigFile implements partial.CompressedImageCore.
func (s *storeImage) RawConfigFile() ([]byte, error) {
	return os.ReadFile(s.blobPath(s.manifest.Config.Digest))
}

// MediaType implements partial.CompressedImageCore.
func (s *storeImage) MediaType() (types.MediaType, error) {
	if s.manifest.MediaType != "" {
		return s.manifest.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

// RawManifest implements partial.CompressedImageCore.
func (s *storeImage) RawManifest() ([]byte, error) { return s.raw, nil }

// LayerByDigest implements partial.CompressedImageCore.
func (s *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == s.manifest.Config.Digest {
		return &storeBlob{path: s.blobPath(h), desc: s.manifest.Config}, nil
	}
	for _, l := range s.manifest.Layers {
		if l.Digest == h {
			return &storeBlob{path: s.blobPath(h), desc: l}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not in manifest", h)
}

type storeBlob struct {
	path string
	desc v1.Descriptor
}

// Digest implements partial.CompressedLayer.
func (b *storeBlob) Digest() (v1.Hash, error) { return b.desc.Digest, nil }

// Compressed implements partial.CompressedLayer.
func (b *storeBlob) Compressed() (io.ReadCloser, error) { return os.Open(b.path) }

// Size implements partial.CompressedLayer.
func (b *storeBlob) Size() (int64, error) { return b.desc.Size, nil }

// MediaType implements partial.CompressedLayer.
func (b *storeBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
