package statedir

import (
	"context"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Dir is one state directory. It owns the directory's layout: every path
// inside it that imgbuild names comes from one of its methods, so that the
// layout is spelled in one place. Make it once from --root with [Resolve]
// (or [At] for a path already resolved) and pass it on.
type Dir struct{ path string }

// Resolve resolves the state directory from the value of --root as
// [StateDir] does.
func Resolve(flag string) (Dir, error) {
	p, err := StateDir(flag)
	return Dir{path: p}, err
}

// At is the state directory at path, which must be absolute and clean.
func At(path string) Dir { return Dir{path: path} }

// Path is the directory itself.
func (d Dir) Path() string { return d.path }

// String implements fmt.Stringer.
func (d Dir) String() string { return d.path }

// File is a record file of imgbuild's own at the top of the state dir
// (blob-sources.json, worker.json, [ResultsFile], ...).
func (d Dir) File(name string) string { return filepath.Join(d.path, name) }

// Images is the image store of recent build results (an OCI layout).
func (d Dir) Images() string { return filepath.Join(d.path, "images") }

// CacheDB is BuildKit's solver cache database.
func (d Dir) CacheDB() string { return filepath.Join(d.path, cacheDB) }

// HistoryDB is BuildKit's build history database.
func (d Dir) HistoryDB() string { return filepath.Join(d.path, historyDB) }

// Temp is where BuildKit and containerd mount snapshots for a moment, so
// that a killed process leaves those mounts where recovery finds them.
func (d Dir) Temp() string { return filepath.Join(d.path, "tmp") }

// Shim is the directory of the runc shim's link.
func (d Dir) Shim() string { return filepath.Join(d.path, "shim") }

// Worker is the runc worker's directory for a snapshotter: BuildKit keeps
// each snapshotter's snapshots, content and metadata apart.
func (d Dir) Worker(snapshotter string) Worker {
	return Worker(filepath.Join(d.path, workerPrefix+snapshotter))
}

// Workers lists the worker directories present, whatever their snapshotter.
func (d Dir) Workers() []Worker {
	dirs, _ := filepath.Glob(filepath.Join(d.path, workerPrefix+"*"))
	out := make([]Worker, 0, len(dirs))
	for _, p := range dirs {
		out = append(out, Worker(p))
	}
	return out
}

// The names in the layout that recovery also lists.
const (
	workerPrefix     = "runc-"
	cacheDB          = "cache.db"
	historyDB        = "history.db"
	metadataDB       = "metadata_v2.db"
	containerdMetaDB = "containerdmeta.db"
)

// Worker is one runc worker's directory inside a state dir.
type Worker string

// Path is the directory itself.
func (w Worker) Path() string { return string(w) }

// Snapshotter is the snapshotter the directory belongs to.
func (w Worker) Snapshotter() string { return filepath.Base(string(w))[len(workerPrefix):] }

// Content is the worker's content store.
func (w Worker) Content() string { return filepath.Join(string(w), "content") }

// Executor holds the OCI bundles of running RUN steps.
func (w Worker) Executor() string { return filepath.Join(string(w), "executor") }

// CacheMounts is the pool RUN --mount=type=cache mounts come from.
func (w Worker) CacheMounts() string { return filepath.Join(string(w), "cachemounts") }

// ContainerdMeta is the containerd metadata database.
func (w Worker) ContainerdMeta() string { return filepath.Join(string(w), containerdMetaDB) }

// Metadata is BuildKit's cache record metadata database.
func (w Worker) Metadata() string { return filepath.Join(string(w), metadataDB) }

// Lock takes the state directory's lock (see [LockOptions]), creating the
// directory.
func (d Dir) Lock(ctx context.Context, opts LockOptions) (*Lock, error) {
	return acquire(ctx, d.path, opts)
}

// RecoverDatabases checks the databases a crash may have left torn and
// sets aside those that are; warn hears what was set aside.
func (d Dir) RecoverDatabases(warn func(string)) error { return recoverDatabases(d.path, warn) }

// UnmountStale unmounts what a killed process left mounted inside the
// state dir.
func (d Dir) UnmountStale(warn func(string)) error { return unmountStale(d.path, warn) }

// RemoveSetAside deletes the databases a start found corrupt and set aside,
// returning the bytes freed.
func (d Dir) RemoveSetAside() (int64, error) { return removeSetAside(d.path) }

// MarkClean records that every database was closed cleanly in this boot.
func (d Dir) MarkClean() error { return markClean(d.path) }

// TakeClean reports whether the last owner left a valid clean-shutdown
// mark, and removes it.
func (d Dir) TakeClean() bool { return takeClean(d.path) }

// RecordResult adds a build result to the image store's index, keeping the
// last keep.
func (d Dir) RecordResult(dgst v1.Hash, keep int) error { return recordResult(d.path, dgst, keep) }

// PruneImages removes image store blobs no kept result needs.
func (d Dir) PruneImages(opts ImagePruneOptions) (int64, error) { return pruneImages(d.path, opts) }

// DefaultMaxUsed is the default bound on the build cache for the disk the
// state dir is on.
func (d Dir) DefaultMaxUsed() int64 { return defaultMaxUsed(d.path) }

// ImageStoreSize is the image store's size on disk.
func (d Dir) ImageStoreSize() int64 { return DirSize(d.Images()) }
