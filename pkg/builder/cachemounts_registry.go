//go:build linux

package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	bkcache "github.com/moby/buildkit/cache"
	"github.com/sirupsen/logrus"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

// CacheMountsArtifactType is the artifactType of the OCI artifact that
// holds cache mounts in a registry. Its config is the empty descriptor;
// each layer is one mount's content, a zstd-compressed tar, annotated with
// the mount's id ([AnnotationCacheMountID]), target
// ([AnnotationCacheMountTarget]) and uncompressed size
// ([AnnotationCacheMountSize]).
const CacheMountsArtifactType = "application/vnd.imgbuild.cache-mounts.v1"

// The annotations of a cache mount layer.
const (
	AnnotationCacheMountID     = "com.github.imgbuild.cache-mount.id"
	AnnotationCacheMountTarget = "com.github.imgbuild.cache-mount.target"
	AnnotationCacheMountSize   = "com.github.imgbuild.cache-mount.size"
)

// cacheMountsRegistry is how the builder reaches the registry holding cache
// mounts: the keychain and registry settings of everything else.
func (o *options) cacheMountsRegistry(ref string) (*registry.Pusher, name.Reference, error) {
	r, err := registry.ParseReference(ref, o.insecure)
	if err != nil {
		return nil, nil, err
	}
	p, err := registry.NewPusher(registry.Options{Insecure: o.insecure, Keychain: o.keychain, Hosts: o.hosts})
	if err != nil {
		return nil, nil, err
	}
	return p, r, nil
}

// importCacheMountsRegistry creates a cache mount record for each mount of
// the artifact at ref that the state dir lacks. No artifact there yet is a
// cold start, as a missing --cache-from is.
func importCacheMountsRegistry(ctx context.Context, cm bkcache.Manager, o *options) error {
	c := o.cacheMounts
	p, ref, err := o.cacheMountsRegistry(c.From.Ref)
	if err != nil {
		return err
	}
	m, digest, err := p.PullArtifact(ctx, ref)
	if errors.Is(err, registry.ErrNotFound) {
		o.log.Infof("no cache mounts at %s yet: the cache mounts start empty", ref)
		return nil
	}
	if err != nil {
		return err
	}
	if m.ArtifactType != CacheMountsArtifactType {
		return fmt.Errorf("%s is not imgbuild cache mounts: its artifactType is %q, want %q", ref, m.ArtifactType, CacheMountsArtifactType)
	}
	perMount, total := c.bounds()
	budget := &sizeBudget{perMount: perMount, total: total}
	n := 0
	for _, l := range m.Layers {
		key, target := l.Annotations[AnnotationCacheMountID], l.Annotations[AnnotationCacheMountTarget]
		size, err := strconv.ParseInt(l.Annotations[AnnotationCacheMountSize], 10, 64)
		if key == "" || strings.Contains(key, ":") || err != nil || size < 0 || l.MediaType != types.OCILayerZStd {
			return fmt.Errorf("%s@%s: layer %s is not a cache mount (id %q, size %q, media type %s)", ref.Context(), digest, l.Digest, key, l.Annotations[AnnotationCacheMountSize], l.MediaType)
		}
		if have, err := hasCacheMount(ctx, cm, key); err != nil || have {
			if err != nil {
				return err
			}
			continue // the state dir's own copy is at least as recent
		}
		if why := budget.take(size); why != "" {
			o.log.Warnf("not importing cache mount %s (target %s): its %s are %s", mountName(key), target, units.BytesSize(float64(size)), why)
			continue
		}
		if err := importCacheMountBlob(ctx, cm, p, ref.Context(), l, key, target, boundOf(perMount, size)); err != nil {
			return err
		}
		n++
	}
	o.log.Infof("imported %d cache mounts from %s@%s", n, ref.Context(), digest)
	return nil
}

func importCacheMountBlob(ctx context.Context, cm bkcache.Manager, p *registry.Pusher, repo name.Repository, l v1.Descriptor, key, target string, limit int64) error {
	rc, err := p.OpenBlob(ctx, repo, l.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	zr, err := zstd.NewReader(rc, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("importing cache mount %q: %w", key, err)
	}
	defer zr.Close()
	return importCacheMount(ctx, cm, key, target, zr, limit)
}

// exportCacheMountsRegistry pushes the state dir's cache mounts (the most
// recently used record per key, within the bounds) to ref as one artifact.
// A mount whose content did not change has the same layer digest as last
// time, so the registry has it and nothing is sent.
func exportCacheMountsRegistry(ctx context.Context, cm bkcache.Manager, o *options) error {
	c := o.cacheMounts
	p, ref, err := o.cacheMountsRegistry(c.To.Ref)
	if err != nil {
		return err
	}
	carried, local, err := listCacheMounts(ctx, cm)
	if err != nil {
		return err
	}
	warnLocal(o.log, local)
	work, err := os.MkdirTemp(o.root, "cachemounts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	empty := filepath.Join(work, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		return err
	}
	perMount, total := c.bounds()
	budget := &sizeBudget{perMount: perMount, total: total}
	a := &registry.Artifact{ArtifactType: CacheMountsArtifactType}
	var size int64
	for i, m := range carried {
		b, n, err := writeCacheMountLayer(ctx, cm, m, empty, budget, o.log, filepath.Join(work, fmt.Sprintf("%d.tar.zst", i)))
		if errors.Is(err, errSkipped) {
			continue
		}
		if err != nil {
			return err
		}
		a.Blobs = append(a.Blobs, b)
		size += n
	}
	// In key order, so that unchanged mounts make the same manifest
	// whichever was used last.
	sort.Slice(a.Blobs, func(i, j int) bool {
		return a.Blobs[i].Annotations[AnnotationCacheMountID] < a.Blobs[j].Annotations[AnnotationCacheMountID]
	})
	digest, err := p.PushArtifact(ctx, a, ref)
	if err != nil {
		return err
	}
	o.log.Infof("saved %d cache mounts (%s) to %s@%s", len(a.Blobs), units.BytesSize(float64(size)), ref.Context(), digest)
	return nil
}

// writeCacheMountLayer writes m as a zstd-compressed tar to path and
// returns it as a blob of the artifact, and its uncompressed size.
func writeCacheMountLayer(ctx context.Context, cm bkcache.Manager, m cacheMount, empty string, budget *sizeBudget, log logrus.FieldLogger, path string) (registry.Blob, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return registry.Blob{}, 0, err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	// One encoder goroutine: the same tar then compresses to the same
	// bytes, which is what makes an unchanged mount's blob the one the
	// registry has.
	zw, err := zstd.NewWriter(cw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return registry.Blob{}, 0, err
	}
	n, err := writeCacheMount(ctx, cm, m, empty, budget, log, zw)
	if err != nil {
		_ = zw.Close()
		return registry.Blob{}, 0, err
	}
	if err := zw.Close(); err != nil {
		return registry.Blob{}, 0, fmt.Errorf("compressing cache mount %q: %w", m.key, err)
	}
	if err := f.Close(); err != nil {
		return registry.Blob{}, 0, fmt.Errorf("writing cache mount %q: %w", m.key, err)
	}
	return registry.Blob{
		MediaType: types.OCILayerZStd,
		Digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))},
		Size:      cw.n,
		Annotations: map[string]string{
			AnnotationCacheMountID:     m.key,
			AnnotationCacheMountTarget: m.target,
			AnnotationCacheMountSize:   strconv.FormatInt(n, 10),
		},
		Open: func() (io.ReadCloser, error) { return os.Open(path) },
	}, n, nil
}
