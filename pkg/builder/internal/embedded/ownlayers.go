//go:build linux

package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/labels"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/buildkit/cache"
	"github.com/moby/buildkit/cache/config"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/util/compression"
	"github.com/moby/buildkit/util/contentutil"
	"github.com/moby/buildkit/util/converter"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/worker/base"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// The build's own layers in the compression asked for.
//
// BuildKit gives each cache record one blob, in the compression of the build
// that first exported it, and without force-compression it exports that
// blob whatever compression is asked for (moby/buildkit#1911, #5458): after
// one zstd build on a state dir, a default build pushes zstd. Forcing
// recompresses the base image's layers too. So the image exporters here see
// refs whose GetRemotes swaps each layer above the base image's (BuildKit's
// own test for which layers are the base's, from the rewrite-timestamp
// code: the leading layers whose diff IDs are the base image config's) for
// a blob of the asked compression, converting it once and linking it to
// the layer's cache record as BuildKit's force-compression does, so that
// the next build finds it and the record's pruning removes it.

// exportWorker is the worker whose image exporters export the build's own
// layers in the asked compression.
type exportWorker struct {
	*base.Worker
}

// Exporter implements worker.Worker.
func (w exportWorker) Exporter(name string, sm *session.Manager) (exporter.Exporter, error) {
	exp, err := w.Worker.Exporter(name, sm)
	if err != nil {
		return nil, err
	}
	switch name {
	case bkclient.ExporterImage, bkclient.ExporterOCI, bkclient.ExporterDocker:
		return ownLayersExporter{Exporter: exp, variants: variantStore{cs: w.ContentStore(), lm: w.LeaseManager()}}, nil
	}
	return exp, nil
}

type ownLayersExporter struct {
	exporter.Exporter
	variants variantStore
}

// Resolve implements exporter.Exporter.
func (e ownLayersExporter) Resolve(ctx context.Context, id int, attrs map[string]string) (exporter.ExporterInstance, error) {
	inst, err := e.Exporter.Resolve(ctx, id, attrs)
	if err != nil {
		return nil, err
	}
	return ownLayersInstance{ExporterInstance: inst, variants: e.variants}, nil
}

type ownLayersInstance struct {
	exporter.ExporterInstance
	variants variantStore
}

// Export implements exporter.ExporterInstance.
func (i ownLayersInstance) Export(ctx context.Context, src *exporter.Source, bi exporter.ExportBuildInfo) (map[string]string, exporter.FinalizeFunc, exporter.DescriptorReference, error) {
	if i.Config().Compression().Force {
		return i.ExporterInstance.Export(ctx, src, bi)
	}
	src = src.Clone()
	if src.Ref != nil {
		base, err := baseDiffIDs(src.Metadata, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		src.Ref = &ownLayersRef{ImmutableRef: src.Ref, base: base, variants: i.variants}
	}
	for id, ref := range src.Refs {
		if ref == nil {
			continue
		}
		base, err := baseDiffIDs(src.Metadata, &exptypes.Platform{ID: id})
		if err != nil {
			return nil, nil, nil, err
		}
		src.Refs[id] = &ownLayersRef{ImmutableRef: ref, base: base, variants: i.variants}
	}
	return i.ExporterInstance.Export(ctx, src, bi)
}

// baseDiffIDs are the diff IDs of the image the build's stage started from,
// as the Dockerfile frontend passes its config to the exporter (none for
// FROM scratch).
func baseDiffIDs(meta map[string][]byte, p *exptypes.Platform) ([]digest.Digest, error) {
	b := exptypes.ParseKey(meta, exptypes.ExporterImageBaseConfigKey, p)
	if len(b) == 0 {
		return nil, nil
	}
	var img ocispecs.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("reading the base image config from the frontend: %w", err)
	}
	return img.RootFS.DiffIDs, nil
}

// ownLayersRef is a ref whose remotes carry its own layers, those above the
// base image's, in the compression asked for.
type ownLayersRef struct {
	cache.ImmutableRef
	base     []digest.Digest
	variants variantStore
}

// GetRemotes implements cache.ImmutableRef. Unless forced (BuildKit then
// converts every layer itself), the first remote's own layers are swapped
// for blobs in cfg's compression; with createIfNeeded, missing ones are
// converted and kept.
func (r *ownLayersRef) GetRemotes(ctx context.Context, createIfNeeded bool, cfg config.RefConfig, all bool, s session.Group) ([]*solver.Remote, error) {
	remotes, err := r.ImmutableRef.GetRemotes(ctx, createIfNeeded, cfg, all, s)
	if err != nil || cfg.Compression.Force || len(remotes) == 0 {
		return remotes, err
	}
	chain := r.LayerChain()
	defer func() { _ = chain.Release(context.WithoutCancel(ctx)) }()
	main := remotes[0]
	if len(chain) != len(main.Descriptors) {
		return nil, fmt.Errorf("ref %s: %d layers, %d blobs", r.ID(), len(chain), len(main.Descriptors))
	}
	out := &solver.Remote{Descriptors: slices.Clone(main.Descriptors)}
	// Reads through the remote's provider, which pulls a lazy blob.
	store := contentutil.NewStoreWithProvider(r.variants.cs, main.Provider)
	swapped := contentutil.NewMultiProvider(main.Provider)
	changed := false
	for i := r.basePrefix(ctx, main.Descriptors); i < len(main.Descriptors); i++ {
		desc := main.Descriptors[i]
		needs, err := cfg.Compression.Type.NeedsConversion(ctx, store, desc)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		if !needs {
			continue
		}
		v, ok, err := r.variants.get(ctx, store, chain[i].ID(), desc, cfg.Compression, createIfNeeded)
		if err != nil {
			return nil, fmt.Errorf("layer %s to %s: %w", desc.Digest, cfg.Compression.Type, err)
		}
		if !ok {
			continue
		}
		if c, ok := desc.Annotations["buildkit/createdat"]; ok {
			v.Annotations["buildkit/createdat"] = c
		}
		out.Descriptors[i] = v
		swapped.Add(v.Digest, r.variants.cs)
		changed = true
	}
	if !changed {
		return remotes, nil
	}
	out.Provider = swapped
	if u, ok := main.Provider.(cache.Unlazier); ok {
		// The exporters pull lazy base layers through the provider.
		out.Provider = unlazyProvider{swapped, u}
	}
	return append([]*solver.Remote{out}, remotes[1:]...), nil
}

// basePrefix counts the leading layers that are the base image's.
func (r *ownLayersRef) basePrefix(ctx context.Context, descs []ocispecs.Descriptor) int {
	n := 0
	for n < len(descs) && n < len(r.base) && r.diffID(ctx, descs[n]) == r.base[n] {
		n++
	}
	return n
}

func (r *ownLayersRef) diffID(ctx context.Context, desc ocispecs.Descriptor) digest.Digest {
	if d := desc.Annotations[labels.LabelUncompressed]; d != "" {
		return digest.Digest(d)
	}
	if info, err := r.variants.cs.Info(ctx, desc.Digest); err == nil {
		return digest.Digest(info.Labels[labels.LabelUncompressed])
	}
	return ""
}

type unlazyProvider struct {
	*contentutil.MultiProvider
	cache.Unlazier
}

// variantStore keeps compression variants of layer blobs in the worker's
// content store, recorded the way BuildKit's cache/refs.go linkBlob records
// them, so that BuildKit and this code find each other's: labels
// "containerd.io/gc.ref.content.blob-<digest>" link a blob and its variant
// both ways, the variant's media type and annotations are in "buildkit.io/blob/"
// labels, and the variant is held by the cache record's "<id>-variants"
// lease, which BuildKit deletes with the record.
type variantStore struct {
	cs content.Store
	lm leases.Manager
}

const (
	variantLabel         = "containerd.io/gc.ref.content.blob-"
	mediaTypeLabel       = "buildkit.io/blob/mediatype"
	blobAnnotationPrefix = "buildkit.io/blob/annotation."
)

// get returns a variant of the blob desc, the layer of cache record id, in
// comp: one already kept, else, with create, one converted now. store
// reads the blob.
func (s variantStore) get(ctx context.Context, store content.Store, id string, desc ocispecs.Descriptor, comp compression.Config, create bool) (ocispecs.Descriptor, bool, error) {
	v, ok, err := s.find(ctx, desc.Digest, comp.Type)
	if err != nil || (!ok && !create) {
		return v, ok, err
	}
	ctx, done, err := leaseutil.WithLease(ctx, s.lm, leaseutil.MakeTemporary)
	if err != nil {
		return v, false, err
	}
	defer func() { _ = done(context.WithoutCancel(ctx)) }()
	if !ok {
		convert, err := converter.New(ctx, store, desc, comp)
		if err != nil {
			return v, false, err
		}
		if convert == nil {
			return v, false, nil
		}
		nv, err := convert(ctx, store, desc)
		if err != nil {
			return v, false, err
		}
		v = *nv
	}
	// A variant found through another record is linked to this one too,
	// so that it lives as long as this layer.
	return v, true, s.link(ctx, id, desc.Digest, v)
}

// find looks for a variant of blob in type t among the blobs linked to it.
func (s variantStore) find(ctx context.Context, blob digest.Digest, t compression.Type) (ocispecs.Descriptor, bool, error) {
	info, err := s.cs.Info(ctx, blob)
	if cerrdefs.IsNotFound(err) {
		return ocispecs.Descriptor{}, false, nil // lazy: nothing converted yet
	}
	if err != nil {
		return ocispecs.Descriptor{}, false, err
	}
	for _, k := range slices.Sorted(maps.Keys(info.Labels)) {
		if !strings.HasPrefix(k, variantLabel) {
			continue
		}
		d, err := digest.Parse(info.Labels[k])
		if err != nil || d == blob {
			continue
		}
		vi, err := s.cs.Info(ctx, d)
		if err != nil || vi.Labels[mediaTypeLabel] == "" {
			continue // collected, or not a layer blob
		}
		v := ocispecs.Descriptor{MediaType: vi.Labels[mediaTypeLabel], Digest: d, Size: vi.Size, Annotations: map[string]string{}}
		for k, a := range vi.Labels {
			if strings.HasPrefix(k, blobAnnotationPrefix) {
				v.Annotations[strings.TrimPrefix(k, blobAnnotationPrefix)] = a
			}
		}
		if needs, err := t.NeedsConversion(ctx, s.cs, v); err == nil && !needs {
			return v, true, nil
		}
	}
	return ocispecs.Descriptor{}, false, nil
}

// link records v as a variant of blob, the layer of cache record id.
func (s variantStore) link(ctx context.Context, id string, blob digest.Digest, v ocispecs.Descriptor) error {
	lease := leases.Lease{ID: id + "-variants"}
	if _, err := s.lm.Create(ctx, func(l *leases.Lease) error {
		l.ID = lease.ID // not flat, so that the labels below are followed
		return nil
	}); err != nil && !cerrdefs.IsAlreadyExists(err) {
		return err
	}
	if err := s.lm.AddResource(ctx, lease, leases.Resource{ID: v.Digest.String(), Type: "content"}); err != nil {
		return err
	}
	vl := map[string]string{variantLabel + blob.String(): blob.String(), mediaTypeLabel: v.MediaType}
	for _, k := range append(slices.Clone(compression.EStargzAnnotations), labels.LabelUncompressed) {
		if a, ok := v.Annotations[k]; ok {
			vl[blobAnnotationPrefix+k] = a
		}
	}
	if err := s.update(ctx, v.Digest, vl); err != nil {
		return err
	}
	return s.update(ctx, blob, map[string]string{variantLabel + v.Digest.String(): v.Digest.String()})
}

// update sets labels on the blob dgst.
func (s variantStore) update(ctx context.Context, dgst digest.Digest, l map[string]string) error {
	fields := make([]string, 0, len(l))
	for k := range l {
		fields = append(fields, "labels."+k)
	}
	_, err := s.cs.Update(ctx, content.Info{Digest: dgst, Labels: l}, fields...)
	return err
}
