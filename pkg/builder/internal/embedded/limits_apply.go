//go:build linux

package embedded

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgbuild/imgbuild/internal/boundio"
)

// imageSizeLabel records, on a layer's committed snapshot, the uncompressed
// size of that layer and every layer below it, so that the image size limit
// holds across processes: a later build that unpacks the next layer starts
// from it.
const imageSizeLabel = "imgbuild.dev/uncompressed-total"

// limitApplier unpacks layers as containerd's file system applier does,
// counting the decompressed stream: it fails once a layer passes the layer
// size limit, or the layers below it and itself pass the image size limit.
// BuildKit then removes the half-unpacked snapshot (cache/refs.go extract:
// a failed Apply leaves the active snapshot to its temporary lease, which
// is deleted and garbage collected).
type limitApplier struct {
	cs     content.Provider
	limits Limits // resolved
	sizes  *chainSizes
	// newApplier is the applier that unpacks, containerd's file system
	// applier by default.
	newApplier func(content.Provider) diff.Applier
}

func (a *limitApplier) inner(cs content.Provider) diff.Applier {
	if a.newApplier != nil {
		return a.newApplier(cs)
	}
	return apply.NewFileSystemApplier(cs)
}

var _ diff.Applier = (*limitApplier)(nil)

// Apply implements diff.Applier.
func (a *limitApplier) Apply(ctx context.Context, desc ocispecs.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispecs.Descriptor, error) {
	plain := a.inner(a.cs)
	if a.limits.LayerSize == 0 && a.limits.ImageSize == 0 {
		return plain.Apply(ctx, desc, mounts, opts...)
	}
	if _, err := images.DiffCompression(ctx, desc.MediaType); err != nil {
		// Not a layer type we decompress (encrypted, say): containerd's
		// processors handle it, or refuse it.
		return plain.Apply(ctx, desc, mounts, opts...)
	}
	key, below := a.sizes.below(ctx, mounts)
	budget, kind := a.limits.LayerSize, LimitLayerSize
	if a.limits.ImageSize > 0 {
		if left := a.limits.ImageSize - below; budget == 0 || left < budget {
			budget, kind = max(left, 0), LimitImageSize
		}
	}
	ra, err := a.cs.ReaderAt(ctx, desc)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("reading layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("decompressing layer %s: %w", desc.Digest, err)
	}
	defer ds.Close()
	le := &LimitError{Kind: kind, Subject: "layer " + desc.Digest.String(), Max: budget}
	switch kind {
	case LimitLayerSize:
		le.Detail = fmt.Sprintf("more than %d bytes uncompressed", budget)
	case LimitImageSize:
		le.Max = a.limits.ImageSize
		le.Detail = fmt.Sprintf("the image's layers up to it more than %d bytes uncompressed", a.limits.ImageSize)
	}
	counted := &boundio.Reader{R: ds, Max: budget, Err: le}
	// The inner applier gets the counted stream as an uncompressed layer;
	// what it returns (the diff ID) is the same as for the original.
	udesc := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayer, Digest: desc.Digest, Size: desc.Size}
	out, err := a.inner(streamProvider{counted}).Apply(ctx, udesc, mounts, opts...)
	if err != nil {
		if counted.Over() {
			// The tar reader may report its own error for the cut stream.
			return ocispecs.Descriptor{}, le
		}
		return out, err
	}
	a.sizes.applied(key, below+counted.N)
	return out, nil
}

// streamProvider serves one stream as a content.Provider, for an applier
// that reads it once from the start (content.NewReader's Reader path).
type streamProvider struct{ r io.Reader }

// ReaderAt implements content.Provider.
func (s streamProvider) ReaderAt(context.Context, ocispecs.Descriptor) (content.ReaderAt, error) {
	return streamReaderAt(s), nil
}

type streamReaderAt struct{ r io.Reader }

// Reader is what content.NewReader uses instead of ReadAt.
func (s streamReaderAt) Reader() io.Reader { return s.r }

// ReadAt implements io.ReaderAt; appliers read through Reader.
func (s streamReaderAt) ReadAt([]byte, int64) (int, error) {
	return 0, fmt.Errorf("layer stream read out of order")
}

// Size implements content.ReaderAt; the size is unknown.
func (s streamReaderAt) Size() int64 { return -1 }

// Close implements io.Closer.
func (s streamReaderAt) Close() error { return nil }

// chainSizes tracks, for the image size limit, the snapshots BuildKit
// unpacks layers into. BuildKit prepares a snapshot on its parent, mounts
// it, applies the layer and commits it under the layer's chain ID; the
// applier only sees the mounts, so the snapshotter's wrapper tells it which
// snapshot (and parent) a mount's writable directory belongs to, and the
// committed snapshot gets the running total as a label.
type chainSizes struct {
	sn ctdsnapshot.Snapshotter // metadata snapshotter, for labels
	ns string                  // its namespace

	mu      sync.Mutex
	active  map[string]activeSnapshot // by writable dir
	totals  map[string]int64          // by active key, once applied
	byChain map[string]int64          // by committed name, this process
}

type activeSnapshot struct{ key, parent string }

func newChainSizes(sn ctdsnapshot.Snapshotter, ns string) *chainSizes {
	return &chainSizes{sn: sn, ns: ns, active: map[string]activeSnapshot{}, totals: map[string]int64{}, byChain: map[string]int64{}}
}

// writableDir is the directory a snapshot's mounts write to: an overlay's
// upperdir, else a single bind mount's source.
func writableDir(mounts []mount.Mount) string {
	if len(mounts) != 1 {
		return ""
	}
	for _, o := range mounts[0].Options {
		if d, ok := strings.CutPrefix(o, "upperdir="); ok {
			return d
		}
	}
	return mounts[0].Source
}

func (c *chainSizes) prepared(key, parent string, mounts []mount.Mount) {
	if c == nil || !strings.HasPrefix(key, "extract-") {
		return // only BuildKit's layer unpacking
	}
	if d := writableDir(mounts); d != "" {
		c.mu.Lock()
		c.active[d] = activeSnapshot{key: key, parent: parent}
		c.mu.Unlock()
	}
}

// below returns the active snapshot mounts belong to and the uncompressed
// size of the layers under it (0 when unknown).
func (c *chainSizes) below(ctx context.Context, mounts []mount.Mount) (string, int64) {
	if c == nil {
		return "", 0
	}
	c.mu.Lock()
	a, ok := c.active[writableDir(mounts)]
	total, known := c.byChain[a.parent]
	c.mu.Unlock()
	if !ok || a.parent == "" || known {
		return a.key, total
	}
	info, err := c.sn.Stat(namespaces.WithNamespace(ctx, c.ns), a.parent)
	if err != nil {
		return a.key, 0
	}
	total, _ = strconv.ParseInt(info.Labels[imageSizeLabel], 10, 64)
	return a.key, total
}

func (c *chainSizes) applied(key string, total int64) {
	if c == nil || key == "" {
		return
	}
	c.mu.Lock()
	c.totals[key] = total
	c.mu.Unlock()
}

// committing returns the label options for committing key as name.
func (c *chainSizes) committing(name, key string) []ctdsnapshot.Opt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	total, ok := c.totals[key]
	c.forgetLocked(key)
	if !ok {
		return nil
	}
	c.byChain[name] = total
	return []ctdsnapshot.Opt{ctdsnapshot.WithLabels(map[string]string{imageSizeLabel: strconv.FormatInt(total, 10)})}
}

func (c *chainSizes) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.forgetLocked(key)
	c.mu.Unlock()
}

func (c *chainSizes) forgetLocked(key string) {
	delete(c.totals, key)
	for d, a := range c.active {
		if a.key == key {
			delete(c.active, d)
		}
	}
}

// sizedSnapshotter tells a [chainSizes] about the snapshots BuildKit
// unpacks layers into, and labels them with their totals when committed.
type sizedSnapshotter struct {
	ctdsnapshot.Snapshotter
	sizes *chainSizes
}

// Prepare implements snapshots.Snapshotter.
func (s *sizedSnapshotter) Prepare(ctx context.Context, key, parent string, opts ...ctdsnapshot.Opt) ([]mount.Mount, error) {
	m, err := s.Snapshotter.Prepare(ctx, key, parent, opts...)
	if err == nil {
		s.sizes.prepared(key, parent, m)
	}
	return m, err
}

// Commit implements snapshots.Snapshotter.
func (s *sizedSnapshotter) Commit(ctx context.Context, name, key string, opts ...ctdsnapshot.Opt) error {
	return s.Snapshotter.Commit(ctx, name, key, append(opts, s.sizes.committing(name, key)...)...)
}

// Remove implements snapshots.Snapshotter.
func (s *sizedSnapshotter) Remove(ctx context.Context, key string) error {
	s.sizes.forget(key)
	return s.Snapshotter.Remove(ctx, key)
}
