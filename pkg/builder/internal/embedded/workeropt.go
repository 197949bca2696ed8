//go:build linux

package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	ctdmetadata "github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/diff/walking"
	"github.com/containerd/platforms"
	"github.com/moby/buildkit/cache/metadata"
	"github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/executor/oci"
	"github.com/moby/buildkit/executor/resources"
	"github.com/moby/buildkit/executor/runcexecutor"
	containerdsnapshot "github.com/moby/buildkit/snapshot/containerd"
	"github.com/moby/buildkit/solver/pb"
	bkdb "github.com/moby/buildkit/util/db"
	"github.com/moby/buildkit/util/db/boltutil"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/util/network"
	"github.com/moby/buildkit/util/network/proxyprovider"
	"github.com/moby/buildkit/util/winlayers"
	"github.com/moby/buildkit/worker/base"
	wlabel "github.com/moby/buildkit/worker/label"
	"github.com/moby/buildkit/worker/runc"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"

	"github.com/imgbuild/imgbuild/pkg/builder/internal/inplace"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// newWorkerOpt is runc.NewWorkerOpt for host networking, except that the
// network proxy provider (used only by RUN steps under a network proxy
// policy) is created on first use: creating it generates a 2048-bit RSA CA
// key, which was a third of the CPU time of a no-change rebuild.
func newWorkerOpt(wd statedir.Worker, snFactory runc.SnapshotterFactory, cfg Config) (base.WorkerOpt, error) {
	rootless, binary, limits := cfg.Rootless, cfg.Runc, cfg.Limits
	var opt base.WorkerOpt
	root := wd.Path()
	if err := os.MkdirAll(root, 0o700); err != nil {
		return opt, err
	}
	host := network.NewHostProvider()
	np := map[pb.NetMode]network.Provider{
		pb.NetMode_UNSET: host,
		pb.NetMode_HOST:  host,
		pb.NetMode_NONE:  network.NewNoneProvider(),
	}
	pp := &lazyProxyProvider{opt: proxyprovider.Opt{EgressProviders: map[pb.NetMode]network.Provider{
		pb.NetMode_UNSET: host,
		pb.NetMode_HOST:  host,
	}}}
	var cmds []string
	if binary != "" {
		cmds = append(cmds, binary)
	}
	rm, err := resources.NewMonitor()
	if err != nil {
		return opt, err
	}
	mode := oci.ProcessSandbox
	if cfg.Executor == ExecutorRuncNoSandbox {
		mode = oci.NoProcessSandbox
	}
	var exe executor.Executor
	if cfg.Executor == ExecutorInPlace {
		if exe, err = inplace.New("/", cfg.SecretsDir, cfg.Protect); err != nil {
			return opt, err
		}
	} else {
		runcExe, err := runcexecutor.New(runcexecutor.Opt{
			Root:              wd.Executor(),
			CommandCandidates: cmds,
			Rootless:          rootless,
			ProcessMode:       mode,
			ResourceMonitor:   rm,
			ProxyProvider:     pp,
		}, np)
		if err != nil {
			return opt, err
		}
		exe = newWatchedExecutor(runcExe, root, binary)
	}
	s, err := snFactory.New(filepath.Join(root, "snapshots"))
	if err != nil {
		return opt, err
	}
	localstore, err := local.NewStore(filepath.Join(root, "content"))
	if err != nil {
		return opt, err
	}
	// Leases and content labels change dozens of times per build, and an
	// fdatasync per transaction was a sixth of a no-change rebuild. Without
	// it, a killed process loses nothing (the kernel still writes its pages
	// out); Close syncs, and after a crash in an earlier boot the next start
	// checks the database (see statedir.Dir.MarkClean). BuildKit opens its solver
	// cache the same way.
	db, err := boltutil.Open(wd.ContainerdMeta(), 0o644, &bolt.Options{
		NoSync:         true,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return opt, err
	}
	mdb := ctdmetadata.NewDB(db, localstore, map[string]ctdsnapshot.Snapshotter{snFactory.Name: s})
	if err := mdb.Init(context.TODO()); err != nil {
		return opt, err
	}
	c := containerdsnapshot.NewContentStore(mdb.ContentStore(), "buildkit")
	// Layers are unpacked through the limits (see limitApplier); the
	// snapshotter wrapper keeps the image size limit's running totals.
	sn := mdb.Snapshotter(snFactory.Name)
	var sizes *chainSizes
	if limits.ImageSize > 0 {
		sizes = newChainSizes(sn, "buildkit")
		sn = &sizedSnapshotter{Snapshotter: sn, sizes: sizes}
	}
	id, err := base.ID(root)
	if err != nil {
		return opt, err
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	md, err := metadata.NewStore(wd.Metadata())
	if err != nil {
		return opt, err
	}
	// The cache records' database takes more transactions than any other
	// (68 fdatasyncs, 11 ms, for a one-file change), for the same reasons
	// as containerdmeta.db above; BuildKit has no option for it.
	if err := setNoSync(md.DB()); err != nil {
		logrus.WithError(err).Debug("metadata_v2.db keeps syncing every transaction")
	}
	la := &limitApplier{cs: c, limits: limits, sizes: sizes}
	differ := walking.NewWalkingDiff(c)
	if cfg.Executor == ExecutorInPlace {
		// containerd's mount even a bind; these work on the directories.
		la.newApplier = func(cs content.Provider) diff.Applier { return inplace.Applier{CS: cs} }
		differ = inplace.Differ{Store: c}
	}
	return base.WorkerOpt{
		ID:   id,
		Root: root,
		Labels: map[string]string{
			wlabel.Executor:       "oci",
			wlabel.Snapshotter:    snFactory.Name,
			wlabel.Hostname:       hostname,
			wlabel.Network:        "host",
			wlabel.OCIProcessMode: mode.String(),
			wlabel.SELinuxEnabled: strconv.FormatBool(false),
		},
		MetadataStore:    md,
		ContentMetadata:  db,
		NetworkProviders: np,
		ProxyProvider:    pp,
		Executor:         exe,
		Snapshotter:      containerdsnapshot.NewSnapshotter(snFactory.Name, sn, "buildkit", nil),
		ContentStore:     c,
		Applier:          layerApplier{winlayers.NewFileSystemApplierWithWindows(c, la)},
		Differ:           winlayers.NewWalkingDiffWithWindows(c, differ),
		Platforms:        []ocispecs.Platform{platforms.Normalize(platforms.DefaultSpec())},
		LeaseManager:     leaseutil.WithNamespace(ctdmetadata.NewLeaseManager(mdb), "buildkit"),
		GarbageCollect:   mdb.GarbageCollect,
		MountPoolRoot:    wd.CacheMounts(),
		ResourceMonitor:  rm,
	}, nil
}

// setNoSync turns off the per-transaction fdatasync of a database BuildKit
// opened with boltutil, which offers no option for it: the *bolt.DB is an
// unexported field. boltutil's Close still syncs (it clears NoSync for its
// final checkpoint). TestSetNoSync fails if a BuildKit upgrade moves it.
func setNoSync(t bkdb.Transactor) error {
	v := reflect.ValueOf(t)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("unexpected database type %T", t)
	}
	f := v.Elem().FieldByName("bdb")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*bolt.DB]() {
		return fmt.Errorf("no *bolt.DB field in %T", t)
	}
	bdb := (*bolt.DB)(f.UnsafePointer())
	if bdb == nil {
		return fmt.Errorf("%T is closed", t)
	}
	bdb.NoSync = true
	return nil
}

// lazyProxyProvider creates BuildKit's proxy provider on first use. Close
// before any use means it is never created.
type lazyProxyProvider struct {
	opt  proxyprovider.Opt
	once sync.Once
	p    network.ProxyProvider
	err  error
}

var _ network.ProxyProvider = (*lazyProxyProvider)(nil)

// NewProxy implements network.ProxyProvider.
func (l *lazyProxyProvider) NewProxy(ctx context.Context, cfg *network.ProxyConfig) (network.ProxyNamespace, error) {
	l.once.Do(func() { l.p, l.err = proxyprovider.New(l.opt) })
	if l.err != nil {
		return nil, l.err
	}
	if l.p == nil {
		return nil, errors.New("proxy network provider is closed")
	}
	return l.p.NewProxy(ctx, cfg)
}

// Close implements network.ProxyProvider.
func (l *lazyProxyProvider) Close() error {
	l.once.Do(func() {}) // no provider after Close
	if l.p == nil {
		return nil
	}
	return l.p.Close()
}

// layerApplier names the layer in extraction errors: containerd's own say
// only "unexpected EOF" or "invalid whiteout name", which leaves a user
// with a hostile or corrupt base image no way to tell which blob it was.
type layerApplier struct{ diff.Applier }

// Apply implements diff.Applier.
func (a layerApplier) Apply(ctx context.Context, desc ocispecs.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispecs.Descriptor, error) {
	d, err := a.Applier.Apply(ctx, desc, mounts, opts...)
	if err != nil {
		return d, fmt.Errorf("extracting layer %s: %w", desc.Digest, err)
	}
	return d, nil
}
