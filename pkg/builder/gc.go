//go:build linux

package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bkclient "github.com/moby/buildkit/client"
	"golang.org/x/sync/errgroup"

	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// gcRule is BuildKit's prune rule.
type gcRule = bkclient.PruneInfo

// WithGC sets the automatic garbage collection run when the builder closes.
// The default is [statedir.GCConfig]'s zero value: the build cache is kept under
// [statedir.Dir.DefaultMaxUsed] and the image store under the last
// [statedir.DefaultKeepResults] results.
func WithGC(c statedir.GCConfig) Option {
	return func(o *options) error {
		if c.MaxUsed < 0 || c.KeepResults < 0 {
			return fmt.Errorf("GC bounds must not be negative")
		}
		o.gc = c
		return nil
	}
}

// gcPolicy is the worker's GC policy for a state dir at root, shaped like
// buildkitd's default: cheap-to-recreate records go first, then anything
// unused for long, then the least recently used until the bound holds.
func gcPolicy(dir statedir.Dir, c statedir.GCConfig) []gcRule {
	if c.Disabled {
		return nil
	}
	maxUsed := c.MaxUsed
	if maxUsed == 0 {
		maxUsed = dir.DefaultMaxUsed()
	}
	return []gcRule{
		// Local context copies and cache mounts unused for two days once
		// they take more than a tenth of the bound.
		{Filter: []string{"type==source.local", "type==exec.cachemount", "type==source.git.checkout"},
			KeepDuration: 48 * time.Hour, MaxUsedSpace: maxUsed / 10},
		// Anything unused for 60 days.
		{KeepDuration: 60 * 24 * time.Hour, MaxUsedSpace: maxUsed},
		// The least recently used build results, down to the bound.
		{MaxUsedSpace: maxUsed},
		// Then internal data (base layers, shared records) too.
		{All: true, MaxUsedSpace: maxUsed},
	}
}

// closing runs what Close does before stopping BuildKit: saving cache mounts,
// then GC. Both only cost cache when they fail, so they warn, except a push
// of cache mounts to a registry, which fails as a --cache-to push does.
func (b *Builder) closing() error {
	var exportErr error
	if !b.opts.cacheMounts.To.IsZero() {
		ctx, cancel := context.WithTimeout(context.Background(), cacheMountsTimeout)
		err := b.opts.exportCacheMounts(ctx, b.bk.Worker().CacheManager())
		cancel()
		switch {
		case err != nil && b.opts.cacheMounts.To.Ref != "":
			exportErr = err
		case err != nil:
			b.opts.log.WithError(err).Warn("saving cache mounts failed")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), gcTimeout)
	defer cancel()
	if err := b.collectGarbage(ctx); err != nil {
		// The build is done and its result out; a failed GC costs disk,
		// not correctness.
		b.opts.log.WithError(err).Warn("garbage collection failed")
	}
	return exportErr
}

// collectGarbage applies the GC policy to the build cache and the image
// store. buildkitd does this on a timer a second after each build, which a
// short-lived process never reaches, so the builder does it when it closes.
func (b *Builder) collectGarbage(ctx context.Context) error {
	rules := b.bk.GCPolicy()
	switch {
	case len(rules) == 0:
	case b.opts.gc.MaxUsed == 0 && b.collectedRecently():
		// The default bound is checked at most once a minute, as buildkitd
		// checks it: summing the cache's size walks every mutable
		// snapshot, the build context's too (60 ms for 20,000 files). A
		// bound the user set holds after every build.
		rules = nil
	case b.underBounds(ctx):
		// No rule would remove a record. Left is collecting what released
		// leases and failed steps left behind, which walks every snapshot
		// and blob: like buildkitd, at most once a minute. The image
		// resolver's leases are left to expire as buildkitd leaves them,
		// so the next build finds the base image's config.
		rules = nil
		if !b.collectedRecently() {
			if err := b.bk.Worker().GarbageCollect(ctx); err != nil {
				return fmt.Errorf("collecting build cache garbage: %w", err)
			}
			b.touchCollected()
		}
	}
	for i, rule := range rules {
		opts := []bkclient.PruneOption{
			bkclient.WithFilter(rule.Filter),
			bkclient.WithKeepOpt(rule.KeepDuration, rule.ReservedSpace, rule.MaxUsedSpace, rule.MinFreeSpace),
		}
		if rule.All {
			opts = append(opts, bkclient.PruneAll)
		}
		if err := b.client.Prune(ctx, nil, opts...); err != nil {
			return fmt.Errorf("collecting build cache garbage: %w", err)
		}
		if i == len(rules)-1 {
			b.touchCollected()
		}
	}
	if b.opts.gc.Disabled {
		return nil
	}
	if _, err := b.opts.dir.PruneImages(statedir.ImagePruneOptions{}); err != nil {
		return err
	}
	return nil
}

// collectAfterDiskFull removes what a failed build left in the state dir
// (the failed step's half-written snapshot, released but not yet collected)
// when the state dir's disk is full, so that the disk is not left full
// until the next collection, which a process that exits now never reaches
// and the next one may skip (see collectGarbage). A failed RUN reports only
// its exit code, so the disk's free space says it, as well as the error.
// Only the process that owns the state dir collects.
func (b *Builder) collectAfterDiskFull(ctx context.Context, buildErr error) {
	if b.joined || b.bk == nil || !diskFull(b.opts.root, buildErr) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gcTimeout)
	defer cancel()
	if err := b.bk.Worker().GarbageCollect(ctx); err != nil {
		b.opts.log.WithError(err).Warn("removing the failed build's snapshots from the full disk")
		return
	}
	b.touchCollected()
}

// diskFull reports whether err is ENOSPC or root's file system has less
// than a fiftieth of its space free.
func diskFull(root string, err error) bool {
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		return true
	}
	var st syscall.Statfs_t
	if syscall.Statfs(root, &st) != nil {
		return false
	}
	return st.Bavail < st.Blocks/50
}

// gcStamp is touched after each collection.
const gcStamp = "gc.last"

// gcInterval is buildkitd's GC throttle.
const gcInterval = time.Minute

// collectedRecently reports whether the last collection is less than
// gcInterval ago.
func (b *Builder) collectedRecently() bool {
	fi, err := os.Stat(filepath.Join(b.opts.root, gcStamp))
	return err == nil && time.Since(fi.ModTime()) < gcInterval
}

func (b *Builder) touchCollected() {
	stamp := filepath.Join(b.opts.root, gcStamp)
	if err := os.WriteFile(stamp, nil, 0o600); err == nil {
		now := time.Now()
		_ = os.Chtimes(stamp, now, now)
	}
}

// underBounds reports whether the build cache is smaller than every GC
// rule's bound, below which BuildKit's prune keeps every record whatever
// its age (see cacheManager.prune).
func (b *Builder) underBounds(ctx context.Context) bool {
	du, err := b.bk.Worker().CacheManager().DiskUsage(ctx, bkclient.DiskUsageInfo{})
	if err != nil {
		return false
	}
	var total int64
	for _, u := range du {
		if !u.Shared {
			total += u.Size
		}
	}
	for _, r := range b.bk.GCPolicy() {
		if r.MaxUsedSpace == 0 || total >= r.MaxUsedSpace || r.ReservedSpace != 0 || r.MinFreeSpace != 0 {
			return false
		}
	}
	return true
}

// Prune removes build cache records and image store results as opts selects,
// and databases set aside as corrupt, and returns what it removed from the
// build cache and the bytes it freed outside it.
func (b *Builder) Prune(ctx context.Context, opts statedir.PruneOptions) ([]statedir.UsageRecord, int64, error) {
	filters := opts.Filters
	if opts.KeepDuration > 0 {
		// BuildKit's own keep-duration removes records that were created
		// recently but never reused; "until" here means neither created nor
		// used within the duration, so select those records by ID.
		var err error
		if filters, err = b.staleFilters(ctx, opts); err != nil {
			return nil, 0, err
		}
	}
	var removed []statedir.UsageRecord
	if filters == nil || len(filters) > 0 {
		popts := []bkclient.PruneOption{
			bkclient.WithFilter(filters),
			bkclient.WithKeepOpt(0, 0, opts.KeepStorage, 0),
		}
		if opts.All {
			popts = append(popts, bkclient.PruneAll)
		}
		ch := make(chan bkclient.UsageInfo)
		var eg errgroup.Group
		eg.Go(func() error {
			for u := range ch {
				removed = append(removed, usageRecord(&u))
			}
			return nil
		})
		err := b.client.Prune(ctx, ch, popts...)
		close(ch)
		_ = eg.Wait()
		if err != nil {
			return removed, 0, fmt.Errorf("pruning build cache: %w", err)
		}
	}
	if b.joined {
		// Builds of other processes may be reading the image store; its
		// owner prunes it when the last one is done.
		return removed, 0, nil
	}
	freed, err := b.opts.dir.PruneImages(statedir.ImagePruneOptions{All: opts.All, OlderThan: opts.KeepDuration})
	if err != nil {
		return removed, freed, err
	}
	aside, err := b.opts.dir.RemoveSetAside()
	return removed, freed + aside, err
}

// staleFilters returns BuildKit filters matching the records neither created
// nor used within opts.KeepDuration, each ANDed with the caller's filters
// (one filter string is a conjunction; several are a disjunction). An empty,
// non-nil result means nothing is stale.
func (b *Builder) staleFilters(ctx context.Context, opts statedir.PruneOptions) ([]string, error) {
	recs, err := b.DiskUsage(ctx)
	if err != nil {
		return nil, err
	}
	cut := time.Now().Add(-opts.KeepDuration)
	out := []string{}
	for _, r := range recs {
		if r.InUse || !r.LastUsedAt.Before(cut) {
			continue
		}
		if len(opts.Filters) == 0 {
			out = append(out, "id=="+r.ID)
		}
		for _, f := range opts.Filters {
			out = append(out, "id=="+r.ID+","+f)
		}
	}
	return out, nil
}

// DiskUsage lists the build cache's records.
func (b *Builder) DiskUsage(ctx context.Context) ([]statedir.UsageRecord, error) {
	du, err := b.client.DiskUsage(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading disk usage: %w", err)
	}
	out := make([]statedir.UsageRecord, 0, len(du))
	for _, u := range du {
		out = append(out, usageRecord(u))
	}
	return out, nil
}

func usageRecord(u *bkclient.UsageInfo) statedir.UsageRecord {
	r := statedir.UsageRecord{
		ID: u.ID, Type: string(u.RecordType), Description: u.Description, Size: u.Size,
		InUse: u.InUse, Shared: u.Shared, Mutable: u.Mutable, UsageCount: u.UsageCount, CreatedAt: u.CreatedAt,
	}
	// A record not reused since it was made was last used when made.
	r.LastUsedAt = u.CreatedAt
	if u.LastUsedAt != nil && u.LastUsedAt.After(u.CreatedAt) {
		r.LastUsedAt = *u.LastUsedAt
	}
	return r
}

// gcTimeout bounds the collection at close: a slow disk must not keep a
// finished build's process alive for long.
const gcTimeout = time.Minute

// cacheMountsTimeout bounds saving cache mounts, a push of up to
// DefaultCacheMountsSize when they go to a registry.
const cacheMountsTimeout = 30 * time.Minute

// Dir is the builder's state dir.
func (b *Builder) Dir() statedir.Dir { return b.opts.dir }
