package imagetools

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Getter reads a manifest's descriptor from its registry;
// [registry.Pusher] is one.
type Getter interface {
	Get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error)
}

// Create returns an image index holding the images srcs name, in order. A
// source that is an index contributes its children, with their
// descriptors. A child named twice is added once; two different images for
// one platform are an error, since a client could get either. The index is
// an OCI index unless every child is a Docker manifest, as buildx does.
func Create(ctx context.Context, get Getter, srcs []name.Reference) (v1.ImageIndex, error) {
	if len(srcs) == 0 {
		return nil, fmt.Errorf("creating index: no source images")
	}
	var adds []mutate.IndexAddendum
	seen := map[v1.Hash]bool{}
	byPlatform := map[string]name.Reference{}
	add := func(src name.Reference, a mutate.IndexAddendum) error {
		if seen[a.Digest] {
			return nil
		}
		seen[a.Digest] = true
		if p := a.Platform; p != nil && p.OS != "unknown" {
			if other, dup := byPlatform[p.String()]; dup {
				return fmt.Errorf("%s and %s are both images for %s", other, src, p)
			}
			byPlatform[p.String()] = src
		}
		adds = append(adds, a)
		return nil
	}
	for _, src := range srcs {
		desc, err := get.Get(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		if d, ok := src.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
			return nil, fmt.Errorf("reading %s: the registry served %s", src, desc.Digest)
		}
		switch {
		case desc.MediaType.IsIndex():
			idx, err := desc.ImageIndex()
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", src, err)
			}
			children, err := indexChildren(idx)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", src, err)
			}
			for _, c := range children {
				if err := add(src, c); err != nil {
					return nil, err
				}
			}
		case desc.MediaType.IsImage():
			img, err := desc.Image()
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", src, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return nil, fmt.Errorf("reading %s's config: %w", src, err)
			}
			if cf.OS == "" || cf.Architecture == "" {
				return nil, fmt.Errorf("%s: its config names no platform (os %q, architecture %q)", src, cf.OS, cf.Architecture)
			}
			if err := add(src, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
				MediaType: desc.MediaType,
				Digest:    desc.Digest,
				Size:      desc.Size,
				Platform:  cf.Platform(),
			}}); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s: media type %q is neither an image nor an index", src, desc.MediaType)
		}
	}
	mt := types.DockerManifestList
	for _, a := range adds {
		if a.MediaType != types.DockerManifestSchema2 {
			mt = types.OCIImageIndex
		}
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), mt), nil
}

// indexChildren are idx's manifests, each with its descriptor as idx has it.
func indexChildren(idx v1.ImageIndex) ([]mutate.IndexAddendum, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []mutate.IndexAddendum
	for _, d := range im.Manifests {
		var a mutate.Appendable
		switch {
		case d.MediaType.IsIndex():
			a, err = idx.ImageIndex(d.Digest)
		case d.MediaType.IsImage():
			a, err = idx.Image(d.Digest)
		default:
			return nil, fmt.Errorf("child %s: media type %q is neither an image nor an index", d.Digest, d.MediaType)
		}
		if err != nil {
			return nil, fmt.Errorf("child %s: %w", d.Digest, err)
		}
		out = append(out, mutate.IndexAddendum{Add: a, Descriptor: d})
	}
	return out, nil
}
