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
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/docker/go-units"
	bkcache "github.com/moby/buildkit/cache"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/snapshot"
	"github.com/moby/buildkit/solver/llbsolver/mounts"
	"github.com/sirupsen/logrus"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
	"github.com/imgbuild/imgbuild/internal/boundio"
)

// CacheMounts says where the contents of `RUN --mount=type=cache` mounts
// are carried across state dirs, for CI runners and pods that start empty:
// when the builder opens it imports the mounts saved in From (those the
// state dir does not have yet), and when it closes it saves every cache
// mount to To, replacing what was there.
//
// Cache mounts are keyed by their id (the target path when no id= is given).
// A cache mount based on another stage (from=) or on uid=/gid=/mode=
// options, which BuildKit makes a mount based on a directory it creates,
// has a key local to the state dir; it is not carried, and saving lists it
// in a warning. Ownership and modes of the files inside a mount are carried.
type CacheMounts struct {
	// From is where mounts are imported from. The default is nowhere.
	From CacheMountsStore
	// To is where mounts are saved to. The default is nowhere.
	To CacheMountsStore
	// MaxMountSize bounds one mount's content in bytes: a larger mount is
	// skipped, with a warning. 0 means [DefaultCacheMountSize]; [NoLimit]
	// turns the bound off.
	MaxMountSize int64
	// MaxSize bounds the mounts' contents together: mounts are taken most
	// recently used first, and one that would bring the total over it is
	// skipped, with a warning. 0 means [DefaultCacheMountsSize]; [NoLimit]
	// turns the bound off.
	MaxSize int64
}

// CacheMountsStore is a directory or a registry reference holding cache
// mounts: at most one of Dir and Ref is set.
type CacheMountsStore struct {
	// Dir holds one tar per mount and an index.json.
	Dir string
	// Ref names an OCI artifact of type [CacheMountsArtifactType] with one
	// zstd layer per mount, pushed and pulled with the builder's keychain
	// and registry settings.
	Ref string
}

// IsZero reports whether s names nothing.
func (s CacheMountsStore) IsZero() bool { return s.Dir == "" && s.Ref == "" }

// String names s in messages.
func (s CacheMountsStore) String() string {
	if s.Ref != "" {
		return s.Ref
	}
	return s.Dir
}

// The default cache mount bounds: far above a language's package cache,
// well below what a registry is happy to hold per build.
const (
	DefaultCacheMountSize  = 4 << 30
	DefaultCacheMountsSize = 10 << 30
)

// WithCacheMounts carries cache mounts across state dirs as c says. The
// default is not to.
func WithCacheMounts(c CacheMounts) Option {
	return func(o *options) error {
		for _, s := range []CacheMountsStore{c.From, c.To} {
			if s.Dir != "" && s.Ref != "" {
				return fmt.Errorf("cache mounts store with both a directory (%s) and a reference (%s)", s.Dir, s.Ref)
			}
		}
		if c.MaxMountSize < NoLimit || c.MaxSize < NoLimit {
			return fmt.Errorf("cache mount bounds %d, %d: want a positive bound, 0 for the default or NoLimit", c.MaxMountSize, c.MaxSize)
		}
		o.cacheMounts = c
		return nil
	}
}

// bounds returns the per-mount and total bounds, 0 meaning none.
func (c CacheMounts) bounds() (perMount, total int64) {
	pick := func(v, def int64) int64 {
		switch v {
		case 0:
			return def
		case NoLimit:
			return 0
		}
		return v
	}
	return pick(c.MaxMountSize, DefaultCacheMountSize), pick(c.MaxSize, DefaultCacheMountsSize)
}

// CacheMountsError is a failure to import cache mounts from a store or to
// save them to one.
type CacheMountsError struct {
	// Export is set when saving failed, unset when importing did.
	Export bool
	Store  CacheMountsStore
	Err    error
}

func (e *CacheMountsError) Error() string {
	if e.Export {
		return fmt.Sprintf("saving cache mounts to %s: %v", e.Store, e.Err)
	}
	return fmt.Sprintf("importing cache mounts from %s: %v", e.Store, e.Err)
}

func (e *CacheMountsError) Unwrap() error { return e.Err }

// cacheMountIndexFile lists the saved cache mounts in a cache mounts dir.
const cacheMountIndexFile = "index.json"

// cacheMountEntry is one saved cache mount: a tar of its contents.
type cacheMountEntry struct {
	Key    string    `json:"key"`
	Target string    `json:"target,omitempty"`
	File   string    `json:"file"`
	Size   int64     `json:"size"`
	Saved  time.Time `json:"saved"`
}

// cacheDirKey is BuildKit's metadata key holding a cache mount's key.
const cacheDirKey = "cache-dir"

// cacheMount is one cache mount record of the state dir.
type cacheMount struct {
	key, target, id string
	used            time.Time
}

// listCacheMounts returns the most recently used record of each cache
// mount key, most recent first, and the keys local to the state dir
// (see [CacheMounts]), as "id (target)".
func listCacheMounts(ctx context.Context, cm bkcache.Manager) (carried []cacheMount, local []string, err error) {
	du, err := cm.DiskUsage(ctx, bkclient.DiskUsageInfo{Filter: []string{"type==" + string(bkclient.UsageRecordTypeCacheMount)}})
	if err != nil {
		return nil, nil, fmt.Errorf("listing cache mounts: %w", err)
	}
	latest := map[string]cacheMount{}
	seenLocal := map[string]bool{}
	for _, u := range du {
		ref, err := getMutable(ctx, cm, u.ID)
		if err != nil {
			continue // gone, or still in use by a build
		}
		key, target := ref.GetString(cacheDirKey), mountTarget(ref.GetDescription())
		_ = ref.Release(ctx)
		if key == "" {
			continue
		}
		if id, _, ok := strings.Cut(key, ":"); ok {
			name := fmt.Sprintf("%s (target %s)", mountName(id), target)
			if !seenLocal[name] {
				seenLocal[name] = true
				local = append(local, name)
			}
			continue
		}
		m := cacheMount{key: key, target: target, id: u.ID, used: usedAt(u)}
		if prev, ok := latest[key]; !ok || m.used.After(prev.used) {
			latest[key] = m
		}
	}
	for _, m := range latest {
		carried = append(carried, m)
	}
	sort.Slice(carried, func(i, j int) bool {
		if !carried[i].used.Equal(carried[j].used) {
			return carried[i].used.After(carried[j].used)
		}
		return carried[i].key < carried[j].key
	})
	sort.Strings(local)
	return carried, local, nil
}

// mountName is a cache mount key as the Dockerfile spells its id: the
// Dockerfile frontend prefixes it with "NAMESPACE/", and the namespace
// (BUILDKIT_CACHE_MOUNT_NS) is usually empty.
func mountName(key string) string { return strings.TrimPrefix(key, "/") }

// mountTarget reads the target path out of a cache mount record's
// description: BuildKit writes "cached mount TARGET from ...", as does
// importCacheMount.
func mountTarget(desc string) string {
	rest, ok := strings.CutPrefix(desc, "cached mount ")
	if !ok {
		return ""
	}
	target, _, _ := strings.Cut(rest, " from ")
	return target
}

// sizeBudget applies the cache mount bounds to mounts taken one by one.
type sizeBudget struct {
	perMount, total, used int64
}

// take reports why a mount of size bytes does not fit, or "" and counts it.
func (b *sizeBudget) take(size int64) string {
	if b.perMount > 0 && size > b.perMount {
		return fmt.Sprintf("over the bound of %s per mount", units.BytesSize(float64(b.perMount)))
	}
	if b.total > 0 && b.used+size > b.total {
		return fmt.Sprintf("would bring the mounts over the bound of %s together", units.BytesSize(float64(b.total)))
	}
	b.used += size
	return ""
}

// importCacheMounts creates a cache mount record for each mount saved in dir
// that the state dir lacks, filled from its tar.
func importCacheMounts(ctx context.Context, cm bkcache.Manager, dir string, c CacheMounts, log logrus.FieldLogger) error {
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
	perMount, total := c.bounds()
	budget := &sizeBudget{perMount: perMount, total: total}
	for _, e := range entries {
		if filepath.Base(e.File) != e.File {
			return fmt.Errorf("cache mounts index: bad file name %q", e.File)
		}
		if have, err := hasCacheMount(ctx, cm, e.Key); err != nil || have {
			if err != nil {
				return err
			}
			continue // the state dir's own copy is at least as recent
		}
		if why := budget.take(e.Size); why != "" {
			log.Warnf("not importing cache mount %s (target %s): its %s are %s", mountName(e.Key), e.Target, units.BytesSize(float64(e.Size)), why)
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.File))
		if err != nil {
			return fmt.Errorf("importing cache mount %q: %w", e.Key, err)
		}
		err = importCacheMount(ctx, cm, e.Key, e.Target, f, boundOf(perMount, e.Size))
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// boundOf is what an import of a mount announced as size bytes may unpack:
// its size, within the bound.
func boundOf(perMount, size int64) int64 {
	if perMount > 0 {
		return min(perMount, size)
	}
	return size
}

// hasCacheMount reports whether the state dir has a record for key.
func hasCacheMount(ctx context.Context, cm bkcache.Manager, key string) (bool, error) {
	existing, err := mounts.SearchCacheDir(ctx, cm, key, false)
	if err != nil {
		return false, fmt.Errorf("looking up cache mount %q: %w", key, err)
	}
	return len(existing) > 0, nil
}

// importCacheMount makes a cache mount record for key from the tar r, which
// may hold at most limit bytes.
func importCacheMount(ctx context.Context, cm bkcache.Manager, key, target string, r io.Reader, limit int64) (err error) {
	desc := fmt.Sprintf("cached mount %s from imgbuild import with id %q", target, key)
	ref, err := cm.New(ctx, nil, nil, bkcache.WithRecordType(bkclient.UsageRecordTypeCacheMount),
		bkcache.WithDescription(desc), bkcache.CachePolicyRetain)
	if err != nil {
		return fmt.Errorf("importing cache mount %q: %w", key, err)
	}
	defer func() {
		if rerr := ref.Release(context.WithoutCancel(ctx)); err == nil && rerr != nil {
			err = fmt.Errorf("importing cache mount %q: %w", key, rerr)
		}
	}()
	bounded := &boundio.Reader{R: r, Max: limit, Err: fmt.Errorf("cache mount %q is larger than the %d bytes it was saved with", key, limit)}
	err = withMounted(ctx, ref, false, func(path string) error {
		// archive.Apply resolves every path inside root, as for layers.
		if _, err := archive.Apply(ctx, path, bounded); err != nil {
			return err
		}
		// To the end, where a registry blob's digest is checked.
		_, err := io.Copy(io.Discard, bounded)
		return err
	})
	if err != nil {
		return fmt.Errorf("importing cache mount %q: %w", key, err)
	}
	// Indexed only once filled, so a build never sees a half-imported mount.
	if err := ref.SetString(cacheDirKey, key, cacheDirKey+":"+key); err != nil {
		return fmt.Errorf("importing cache mount %q: %w", key, err)
	}
	return nil
}

// warnLocal lists the mounts that cannot be carried.
func warnLocal(log logrus.FieldLogger, local []string) {
	if len(local) > 0 {
		log.Warnf("not saving cache mounts built on another stage (from=) or with uid=, gid= or mode=, whose keys belong to this state dir: %s", strings.Join(local, ", "))
	}
}

// exportCacheMounts saves each cache mount of the state dir (the most
// recently used record per key) as a tar in dir and rewrites dir's index.
func exportCacheMounts(ctx context.Context, cm bkcache.Manager, dir, tmpRoot string, c CacheMounts, log logrus.FieldLogger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating cache mounts dir: %w", err)
	}
	carried, local, err := listCacheMounts(ctx, cm)
	if err != nil {
		return err
	}
	warnLocal(log, local)
	empty, err := os.MkdirTemp(tmpRoot, "empty-")
	if err != nil {
		return err
	}
	defer os.Remove(empty)
	perMount, total := c.bounds()
	budget := &sizeBudget{perMount: perMount, total: total}
	entries := []cacheMountEntry{}
	for _, m := range carried {
		sum := sha256.Sum256([]byte(m.key))
		e := cacheMountEntry{Key: m.key, Target: m.target, File: hex.EncodeToString(sum[:12]) + ".tar", Saved: time.Now().UTC()}
		err := atomicfile.Write(filepath.Join(dir, e.File), 0o600, func(w io.Writer) error {
			var err error
			e.Size, err = writeCacheMount(ctx, cm, m, empty, budget, log, w)
			return err
		})
		if errors.Is(err, errSkipped) {
			continue
		}
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

// errSkipped is writeCacheMount leaving out a mount over the bounds.
var errSkipped = errors.New("cache mount skipped")

// writeCacheMount writes m's content to w as a tar and returns its size,
// or errSkipped, with a warning, when m is over the bounds. The tar of a
// tree is the same bytes every time (entries in lexical order, times to the
// second, no access or change times), so an unchanged mount has the same
// digest.
func writeCacheMount(ctx context.Context, cm bkcache.Manager, m cacheMount, empty string, budget *sizeBudget, log logrus.FieldLogger, w io.Writer) (int64, error) {
	ref, err := getMutable(ctx, cm, m.id)
	if err != nil {
		return 0, fmt.Errorf("exporting cache mount %q: %w", m.key, err)
	}
	defer func() { _ = ref.Release(context.WithoutCancel(ctx)) }()
	cw := &countingWriter{w: w}
	err = withMounted(ctx, ref, true, func(path string) error {
		size, err := treeSize(path)
		if err != nil {
			return err
		}
		if why := budget.take(size); why != "" {
			log.Warnf("not saving cache mount %s (target %s): its %s are %s", mountName(m.key), m.target, units.BytesSize(float64(size)), why)
			return errSkipped
		}
		return archive.WriteDiff(ctx, cw, empty, path)
	})
	if errors.Is(err, errSkipped) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("exporting cache mount %q: %w", m.key, err)
	}
	return cw.n, nil
}

// treeSize is the bytes of the files under root.
func treeSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
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

// importCacheMounts imports the cache mounts of o.cacheMounts.From, if any.
func (o *options) importCacheMounts(ctx context.Context, cm bkcache.Manager) error {
	from := o.cacheMounts.From
	var err error
	switch {
	case from.Ref != "":
		err = importCacheMountsRegistry(ctx, cm, o)
	case from.Dir != "":
		err = importCacheMounts(ctx, cm, from.Dir, o.cacheMounts, o.log)
	}
	if err != nil {
		return &CacheMountsError{Store: from, Err: err}
	}
	return nil
}

// exportCacheMounts saves the cache mounts to o.cacheMounts.To, if any.
func (o *options) exportCacheMounts(ctx context.Context, cm bkcache.Manager) error {
	to := o.cacheMounts.To
	var err error
	switch {
	case to.Ref != "":
		err = exportCacheMountsRegistry(ctx, cm, o)
	case to.Dir != "":
		err = exportCacheMounts(ctx, cm, to.Dir, o.root, o.cacheMounts, o.log)
	}
	if err != nil {
		return &CacheMountsError{Export: true, Store: to, Err: err}
	}
	return nil
}
