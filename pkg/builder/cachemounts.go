//go:build linux

package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	bkcache "github.com/moby/buildkit/cache"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/snapshot"
	"github.com/moby/buildkit/solver/llbsolver/mounts"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// WithCacheMounts makes the builder carry `RUN --mount=type=cache` contents
// across state dirs, for CI runners that start empty: at start it imports
// the cache mounts saved in from (those the state dir does not have yet), and
// when it closes it saves every cache mount to to, replacing what was there.
// Either may be empty. The default is neither.
//
// Cache mounts are keyed by their id (the target path when no id= is given).
// A cache mount based on another stage or on uid=/gid=/mode= options has a
// state-dir-local key and is not carried.
func WithCacheMounts(from, to string) Option {
	return func(o *options) error {
		o.cacheMountsFrom, o.cacheMountsTo = from, to
		return nil
	}
}

// cacheMountIndexFile lists the saved cache mounts in a cache mounts dir.
const cacheMountIndexFile = "index.json"

// cacheMountEntry is one saved cache mount: a tar of its contents.
type cacheMountEntry struct {
	Key   string    `json:"key"`
	File  string    `json:"file"`
	Size  int64     `json:"size"`
	Saved time.Time `json:"saved"`
}

// cacheDirKey is BuildKit's metadata key holding a cache mount's key.
const cacheDirKey = "cache-dir"

// importCacheMounts creates a cache mount record for each mount saved in dir
// that the state dir lacks, filled from its tar.
func importCacheMounts(ctx context.Context, cm bkcache.Manager, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, cacheMountIndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // first run: nothing saved yet
	}
	if err != nil {
		return fmt.Errorf("reading cache mounts index: %w", err)
	}
	var entries []cacheMountEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return fmt.Errorf("parsing cache mounts index %s: %w", filepath.Join(dir, cacheMountIndexFile), err)
	}
	for _, e := range entries {
		existing, err := mounts.SearchCacheDir(ctx, cm, e.Key, false)
		if err != nil {
			return fmt.Errorf("looking up cache mount %q: %w", e.Key, err)
		}
		if len(existing) > 0 {
			continue // the state dir's own copy is at least as recent
		}
		if err := importCacheMount(ctx, cm, dir, e); err != nil {
			return err
		}
	}
	return nil
}

func importCacheMount(ctx context.Context, cm bkcache.Manager, dir string, e cacheMountEntry) (err error) {
	if filepath.Base(e.File) != e.File {
		return fmt.Errorf("cache mounts index: bad file name %q", e.File)
	}
	f, err := os.Open(filepath.Join(dir, e.File))
	if err != nil {
		return fmt.Errorf("importing cache mount %q: %w", e.Key, err)
	}
	defer f.Close()
	ref, err := cm.New(ctx, nil, nil, bkcache.WithRecordType(bkclient.UsageRecordTypeCacheMount),
		bkcache.WithDescription(fmt.Sprintf("cached mount with id %q, imported", e.Key)), bkcache.CachePolicyRetain)
	if err != nil {
		return fmt.Errorf("importing cache mount %q: %w", e.Key, err)
	}
	defer func() {
		if rerr := ref.Release(context.WithoutCancel(ctx)); err == nil && rerr != nil {
			err = fmt.Errorf("importing cache mount %q: %w", e.Key, rerr)
		}
	}()
	err = withMounted(ctx, ref, false, func(path string) error {
		// archive.Apply resolves every path inside root, as for layers.
		_, err := archive.Apply(ctx, path, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("importing cache mount %q: %w", e.Key, err)
	}
	// Indexed only once filled, so a build never sees a half-imported mount.
	if err := ref.SetString(cacheDirKey, e.Key, cacheDirKey+":"+e.Key); err != nil {
		return fmt.Errorf("importing cache mount %q: %w", e.Key, err)
	}
	return nil
}

// exportCacheMounts saves each cache mount of the state dir (the most
// recently used record per key) as a tar in dir and rewrites dir's index.
func exportCacheMounts(ctx context.Context, cm bkcache.Manager, dir, tmpRoot string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating cache mounts dir: %w", err)
	}
	du, err := cm.DiskUsage(ctx, bkclient.DiskUsageInfo{Filter: []string{"type==" + string(bkclient.UsageRecordTypeCacheMount)}})
	if err != nil {
		return fmt.Errorf("listing cache mounts: %w", err)
	}
	latest := map[string]*bkclient.UsageInfo{}
	for _, u := range du {
		ref, err := getMutable(ctx, cm, u.ID)
		if err != nil {
			continue // gone, or still in use by a build
		}
		key := ref.GetString(cacheDirKey)
		_ = ref.Release(ctx)
		if key == "" || strings.Contains(key, ":") {
			continue // state-dir-local key (see WithCacheMounts)
		}
		if prev, ok := latest[key]; !ok || usedAt(u).After(usedAt(prev)) {
			latest[key] = u
		}
	}
	empty, err := os.MkdirTemp(tmpRoot, "empty-")
	if err != nil {
		return err
	}
	defer os.Remove(empty)
	var entries []cacheMountEntry
	for key, u := range latest {
		e, err := exportCacheMount(ctx, cm, dir, empty, key, u.ID)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, cacheMountIndexFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing cache mounts index: %w", err)
	}
	// Remove tars of mounts no longer present.
	keep := map[string]bool{cacheMountIndexFile: true}
	for _, e := range entries {
		keep[e.File] = true
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	for _, p := range old {
		if !keep[filepath.Base(p)] {
			_ = os.Remove(p)
		}
	}
	return nil
}

func exportCacheMount(ctx context.Context, cm bkcache.Manager, dir, empty, key, id string) (cacheMountEntry, error) {
	sum := sha256.Sum256([]byte(key))
	e := cacheMountEntry{Key: key, File: hex.EncodeToString(sum[:12]) + ".tar", Saved: time.Now().UTC()}
	ref, err := getMutable(ctx, cm, id)
	if err != nil {
		return e, fmt.Errorf("exporting cache mount %q: %w", key, err)
	}
	defer func() { _ = ref.Release(context.WithoutCancel(ctx)) }()
	err = atomicfile.Write(filepath.Join(dir, e.File), 0o600, func(w io.Writer) error {
		cw := &countingWriter{w: w}
		err := withMounted(ctx, ref, true, func(path string) error {
			return archive.WriteDiff(ctx, cw, empty, path)
		})
		e.Size = cw.n
		return err
	})
	if err != nil {
		return e, fmt.Errorf("exporting cache mount %q: %w", key, err)
	}
	return e, nil
}

// lockedRetry bounds how long getMutable waits for a cache mount that the
// solver still holds: a finished build releases its mounts asynchronously.
const lockedRetry = 5 * time.Second

// getMutable is cm.GetMutable, retried while the record is locked.
func getMutable(ctx context.Context, cm bkcache.Manager, id string) (bkcache.MutableRef, error) {
	deadline := time.Now().Add(lockedRetry)
	for {
		ref, err := cm.GetMutable(ctx, id)
		if !errors.Is(err, bkcache.ErrLocked) || time.Now().After(deadline) {
			return ref, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// withMounted mounts ref on a temporary directory for f.
func withMounted(ctx context.Context, ref bkcache.MutableRef, readonly bool, f func(string) error) error {
	m, err := ref.Mount(ctx, readonly, nil)
	if err != nil {
		return err
	}
	lm := snapshot.LocalMounter(m)
	path, err := lm.Mount()
	if err != nil {
		return err
	}
	ferr := f(path)
	return errors.Join(ferr, lm.Unmount())
}

func usedAt(u *bkclient.UsageInfo) time.Time {
	if u.LastUsedAt != nil {
		return *u.LastUsedAt
	}
	return u.CreatedAt
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
