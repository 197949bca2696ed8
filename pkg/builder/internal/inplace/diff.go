//go:build linux

package inplace

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/epoch"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Containerd's file system applier and walking differ mount the snapshots
// they are given (mount.WithTempMount), even a plain bind of a directory.
// These do what they do on the native snapshotter's directories directly.

// dirOf is the directory behind mounts: none (an empty lower) or one bind.
func dirOf(mounts []mount.Mount) (string, bool, error) {
	switch {
	case len(mounts) == 0:
		return "", true, nil
	case len(mounts) == 1 && (mounts[0].Type == "bind" || mounts[0].Type == "rbind"):
		return mounts[0].Source, false, nil
	}
	return "", false, fmt.Errorf("the in-place executor needs the native snapshotter's directories, not %s", describe(mounts))
}

// withDir runs f on the directory behind mounts (an empty one for none).
func withDir(mounts []mount.Mount, f func(string) error) error {
	dir, empty, err := dirOf(mounts)
	if err != nil {
		return err
	}
	if empty {
		tmp, err := os.MkdirTemp("", "imgbuild-empty-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	return f(dir)
}

// Applier unpacks a layer into the directory of a native snapshot.
type Applier struct {
	CS content.Provider
}

var _ diff.Applier = Applier{}

// Apply implements diff.Applier for uncompressed, gzip and zstd layers.
func (a Applier) Apply(ctx context.Context, desc ocispecs.Descriptor, mounts []mount.Mount, _ ...diff.ApplyOpt) (ocispecs.Descriptor, error) {
	if _, err := images.DiffCompression(ctx, desc.MediaType); err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("layer %s: media type %s: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	}
	ra, err := a.CS.ReaderAt(ctx, desc)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("reading layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("decompressing layer %s: %w", desc.Digest, err)
	}
	defer ds.Close()
	digester := digest.Canonical.Digester()
	rc := &countingReader{r: io.TeeReader(ds, digester.Hash())}
	if err := withDir(mounts, func(root string) error {
		_, err := archive.Apply(ctx, root, rc)
		return err
	}); err != nil {
		return ocispecs.Descriptor{}, err
	}
	// The digest covers the whole stream, padding after the tar's end too.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return ocispecs.Descriptor{}, err
	}
	return ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayer, Size: rc.n, Digest: digester.Digest()}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Differ is containerd's walking differ on the native snapshotter's
// directories.
type Differ struct {
	Store content.Store
}

var _ diff.Comparer = Differ{}

// Compare implements diff.Comparer as walking.Compare does.
func (d Differ) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.Opt) (ocispecs.Descriptor, error) {
	var config diff.Config
	for _, opt := range opts {
		if err := opt(&config); err != nil {
			return ocispecs.Descriptor{}, err
		}
	}
	if tm := epoch.FromContext(ctx); tm != nil && config.SourceDateEpoch == nil {
		config.SourceDateEpoch = tm
	}
	var writeOpts []archive.WriteDiffOpt
	if config.SourceDateEpoch != nil {
		writeOpts = append(writeOpts, archive.WithSourceDateEpoch(config.SourceDateEpoch))
	}
	ctype := compression.Uncompressed
	if config.Compressor != nil {
		if config.MediaType == "" {
			return ocispecs.Descriptor{}, errors.New("media type must be explicitly specified when using custom compressor")
		}
		ctype = compression.Unknown
	} else {
		if config.MediaType == "" {
			config.MediaType = ocispecs.MediaTypeImageLayerGzip
		}
		switch config.MediaType {
		case ocispecs.MediaTypeImageLayer:
		case ocispecs.MediaTypeImageLayerGzip:
			ctype = compression.Gzip
		case ocispecs.MediaTypeImageLayerZstd:
			ctype = compression.Zstd
		default:
			return ocispecs.Descriptor{}, fmt.Errorf("unsupported diff media type: %v: %w", config.MediaType, errdefs.ErrNotImplemented)
		}
	}
	var out ocispecs.Descriptor
	err := withDir(lower, func(lowerRoot string) error {
		return withDir(upper, func(upperRoot string) error {
			var err error
			out, err = d.write(ctx, &config, ctype, lowerRoot, upperRoot, writeOpts)
			return err
		})
	})
	return out, err
}

func (d Differ) write(ctx context.Context, config *diff.Config, ctype compression.Compression, lowerRoot, upperRoot string, writeOpts []archive.WriteDiffOpt) (ocispecs.Descriptor, error) {
	newRef := config.Reference == ""
	if newRef {
		config.Reference = uniqueRef()
	}
	cw, err := d.Store.Writer(ctx, content.WithRef(config.Reference), content.WithDescriptor(ocispecs.Descriptor{MediaType: config.MediaType}))
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("failed to open writer: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			cw.Close()
			if newRef {
				_ = d.Store.Abort(ctx, config.Reference)
			}
		}
	}()
	if !newRef {
		if err := cw.Truncate(0); err != nil {
			return ocispecs.Descriptor{}, err
		}
	}
	if ctype != compression.Uncompressed {
		dgstr := digest.SHA256.Digester()
		var compressed io.WriteCloser
		if config.Compressor != nil {
			compressed, err = config.Compressor(cw, config.MediaType)
		} else {
			compressed, err = compression.CompressStream(cw, ctype)
		}
		if err != nil {
			return ocispecs.Descriptor{}, fmt.Errorf("failed to get compressed stream: %w", err)
		}
		err = archive.WriteDiff(ctx, io.MultiWriter(compressed, dgstr.Hash()), lowerRoot, upperRoot, writeOpts...)
		compressed.Close()
		if err != nil {
			return ocispecs.Descriptor{}, fmt.Errorf("failed to write compressed diff: %w", err)
		}
		if config.Labels == nil {
			config.Labels = map[string]string{}
		}
		config.Labels[labels.LabelUncompressed] = dgstr.Digest().String()
	} else if err := archive.WriteDiff(ctx, cw, lowerRoot, upperRoot, writeOpts...); err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("failed to write diff: %w", err)
	}
	var copts []content.Opt
	if config.Labels != nil {
		copts = append(copts, content.WithLabels(config.Labels))
	}
	dgst := cw.Digest()
	if err := cw.Commit(ctx, 0, dgst, copts...); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispecs.Descriptor{}, fmt.Errorf("failed to commit: %w", err)
	}
	committed = true
	info, err := d.Store.Info(ctx, dgst)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("failed to get info from content store: %w", err)
	}
	if info.Labels == nil {
		info.Labels = map[string]string{}
	}
	if _, ok := info.Labels[labels.LabelUncompressed]; !ok {
		info.Labels[labels.LabelUncompressed] = config.Labels[labels.LabelUncompressed]
		if _, err := d.Store.Update(ctx, info, "labels."+labels.LabelUncompressed); err != nil {
			return ocispecs.Descriptor{}, fmt.Errorf("error setting uncompressed label: %w", err)
		}
	}
	return ocispecs.Descriptor{MediaType: config.MediaType, Size: info.Size, Digest: info.Digest}, nil
}

func uniqueRef() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return "imgbuild-inplace-" + base64.URLEncoding.EncodeToString(b)
}
