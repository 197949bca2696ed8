//go:build linux

package builder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	fuseoverlayfs "github.com/containerd/fuse-overlayfs-snapshotter/v2"
	"github.com/moby/buildkit/cache/remotecache"
	inlineremotecache "github.com/moby/buildkit/cache/remotecache/inline"
	localremotecache "github.com/moby/buildkit/cache/remotecache/local"
	registryremotecache "github.com/moby/buildkit/cache/remotecache/registry"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/control"
	"github.com/moby/buildkit/frontend"
	dockerfile "github.com/moby/buildkit/frontend/dockerfile/builder"
	"github.com/moby/buildkit/frontend/gateway"
	"github.com/moby/buildkit/frontend/gateway/forwarder"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/solver/bboltcachestorage"
	"github.com/moby/buildkit/util/db/boltutil"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/moby/buildkit/worker"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/runc"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// embedded is one in-process BuildKit: controller, gRPC server on an
// in-memory listener, and the client connected to it.
type embedded struct {
	ctrl        *control.Controller
	server      *grpc.Server
	listener    *bufconn.Listener
	client      *bkclient.Client
	snapshotter string
	gcPolicy    []gcRule
	worker      *base.Worker
	// sources records where pulled blobs came from (nil when joined).
	sources *blobSources
	// snapshotters are closed last, after everything that uses them.
	snapshotters []snapshots.Snapshotter
	// watchdog stops the RUN containers if this process is killed.
	watchdog *sandbox.Watchdog
}

// startEmbedded wires a controller the way cmd/buildkitd's newController and
// ociWorkerInitializer do, minus everything a single-process builder has no
// use for (CNI, tracing, the containerd worker, gha/s3/azblob caches).
func startEmbedded(ctx context.Context, o *options) (*embedded, error) {
	snName, snFactory, err := snapshotterFactory(o.root, o.snapshotter)
	if err != nil {
		return nil, err
	}
	// Before anything opens a database: another snapshotter's view of the
	// state dir would drop its records.
	explicit := o.snapshotter != "" && o.snapshotter != "auto"
	if err := checkWorkerRecord(o.root, snName, explicit, sandbox.InUserNamespace()); err != nil {
		return nil, err
	}
	if err := recoverState(ctx, o); err != nil {
		return nil, err
	}
	if err := useTempDir(o.dir); err != nil {
		return nil, err
	}
	sm, err := session.NewManager()
	if err != nil {
		return nil, fmt.Errorf("creating session manager: %w", err)
	}
	sources := newBlobSources(o.root)
	hosts := registryHosts(o, sources)

	// The worker never closes the snapshotter it creates (buildkitd exits
	// instead); keep hold of it so that Close releases its database.
	var created []snapshots.Snapshotter
	newSn := snFactory.New
	snFactory.New = func(root string) (snapshots.Snapshotter, error) {
		sn, err := newSn(root)
		if err == nil {
			created = append(created, sn)
		}
		return sn, err
	}
	wopt, err := newWorkerOpt(o.dir.Worker(snFactory.Name), snFactory, sandbox.InUserNamespace(), o.runc, o.limits.resolved())
	if err != nil {
		return nil, fmt.Errorf("creating runc worker: %w", err)
	}
	wopt.RegistryHosts = hosts
	policy := gcPolicy(o.dir, o.gc)
	wopt.GCPolicy = policy
	w, err := base.NewWorker(ctx, wopt)
	if err != nil {
		return nil, fmt.Errorf("creating worker: %w", err)
	}
	wc := &worker.Controller{}
	if err := wc.Add(exportWorker{w}); err != nil {
		return nil, err
	}

	frontends := map[string]frontend.Frontend{
		"dockerfile.v0": forwarder.NewGatewayForwarder(wc.Infos(), dockerfile.Build),
	}
	if o.allowExternalFrontends {
		gw, err := gateway.NewGatewayFrontend(wc.Infos(), nil)
		if err != nil {
			return nil, fmt.Errorf("creating gateway frontend: %w", err)
		}
		frontends["gateway.v0"] = gw
	}

	cacheStorage, err := bboltcachestorage.NewStore(o.dir.CacheDB())
	if err != nil {
		return nil, fmt.Errorf("opening cache database: %w", err)
	}
	// Not synced per transaction, like containerdmeta.db (see newWorkerOpt).
	historyDB, err := boltutil.SafeOpen(o.dir.HistoryDB(), 0o600, &bolt.Options{
		NoSync:         true,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		cacheStorage.Close()
		return nil, fmt.Errorf("opening history database: %w", err)
	}

	ctrl, err := control.NewController(control.Opt{
		SessionManager:   sm,
		WorkerController: wc,
		Frontends:        frontends,
		ResolveCacheExporterFuncs: map[string]remotecache.ResolveCacheExporterFunc{
			"registry": registryremotecache.ResolveCacheExporterFunc(sm, hosts),
			"local":    localremotecache.ResolveCacheExporterFunc(sm),
			"inline":   inlineremotecache.ResolveCacheExporterFunc(),
		},
		ResolveCacheImporterFuncs: map[string]remotecache.ResolveCacheImporterFunc{
			"registry": registryremotecache.ResolveCacheImporterFunc(sm, w.ContentStore(), hosts),
			"local":    localremotecache.ResolveCacheImporterFunc(sm),
		},
		CacheManager:   solver.NewCacheManager(ctx, "local", cacheStorage, worker.NewCacheResultStorage(wc)),
		HistoryDB:      historyDB,
		CacheStore:     cacheStorage,
		LeaseManager:   w.LeaseManager(),
		ContentStore:   w.ContentStore(),
		GarbageCollect: w.GarbageCollect,
	})
	if err != nil {
		historyDB.Close()
		cacheStorage.Close()
		return nil, fmt.Errorf("creating controller: %w", err)
	}

	server := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcerrors.UnaryServerInterceptor),
		grpc.StreamInterceptor(grpcerrors.StreamServerInterceptor),
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize),
	)
	ctrl.Register(server)
	lis := bufconn.Listen(1 << 20)
	go server.Serve(lis) //nolint:errcheck // returns when the server stops

	c, err := bkclient.New(ctx, "", bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	if err != nil {
		server.Stop()
		ctrl.Close()
		return nil, fmt.Errorf("connecting to embedded BuildKit: %w", err)
	}
	var dog *sandbox.Watchdog
	if we, ok := wopt.Executor.(*watchedExecutor); ok {
		dog = we.dog
	}
	return &embedded{ctrl: ctrl, server: server, listener: lis, client: c, snapshotter: snName, gcPolicy: policy, worker: w, sources: sources, snapshotters: created, watchdog: dog}, nil
}

// maxMsgSize matches containerd's defaults, which buildkitd uses too.
const maxMsgSize = 16 << 20

func (e *embedded) close() error {
	e.client.Close()
	e.server.Stop()
	errs := []error{e.ctrl.Close()}
	for _, sn := range e.snapshotters {
		errs = append(errs, sn.Close())
	}
	if e.watchdog != nil {
		e.watchdog.Stop()
	}
	return errors.Join(errs...)
}

// detectSnapshotter probes overlayfs, then fuse-overlayfs, on root's
// filesystem. The overlayfs probe mounts and unmounts an overlay, and the
// unmount syncs the whole filesystem: 0.3 s behind another process's
// 600 MB of unwritten data. So the answer is kept in recordDir (see
// probeRecordDir), per boot, filesystem, user and user namespace.
func detectSnapshotter(root, recordDir string) string {
	var key, record string
	var st syscall.Stat_t
	if boot, err := statedir.BootID(); err == nil && syscall.Stat(root, &st) == nil {
		key = fmt.Sprintf("boot=%s dev=%d uid=%d userns=%t\n", boot, st.Dev, os.Geteuid(), sandbox.InUserNamespace())
		record = filepath.Join(recordDir, fmt.Sprintf("snapshotter-%d", st.Dev))
	}
	if b, err := os.ReadFile(record); err == nil && key != "" {
		if k, name, ok := strings.Cut(string(b), "snapshotter="); ok && k == key {
			return strings.TrimSpace(name)
		}
	}
	name := "native"
	if err := overlayutils.Supported(root); err == nil {
		name = "overlayfs"
	} else if err := fuseoverlayfs.Supported(root); err == nil {
		name = "fuse-overlayfs"
	}
	if key != "" && os.MkdirAll(recordDir, 0o700) == nil {
		_ = atomicfile.WriteFile(record, []byte(key+"snapshotter="+name+"\n"), 0o600)
	}
	return name
}

// probeRecordDir is where detectSnapshotter keeps its answers: a runtime
// dir, emptied at boot and shared by all of the user's state dirs (so a
// cold build on a fresh --root does not probe either), else the state dir.
func probeRecordDir(root string) string {
	if os.Geteuid() == 0 && !sandbox.InUserNamespace() {
		return "/run/imgbuild"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "imgbuild")
	}
	return root
}

// snapshotterFactory picks overlayfs where the kernel supports it on the state
// dir's filesystem (in a user namespace too, from Linux 5.11), else
// fuse-overlayfs where its binary and /dev/fuse are there (rootless on older
// kernels), else native (full copies, slow but works anywhere), like
// buildkitd's "auto".
func snapshotterFactory(root, name string) (string, runc.SnapshotterFactory, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", runc.SnapshotterFactory{}, fmt.Errorf("creating state dir: %w", err)
	}
	if name == "" || name == "auto" {
		name = detectSnapshotter(root, probeRecordDir(root))
	}
	switch name {
	case "overlayfs":
		return name, runc.SnapshotterFactory{Name: name, New: func(root string) (snapshots.Snapshotter, error) {
			return overlay.NewSnapshotter(root, overlay.AsynchronousRemove)
		}}, nil
	case "fuse-overlayfs":
		return name, runc.SnapshotterFactory{Name: name, New: func(root string) (snapshots.Snapshotter, error) {
			return fuseoverlayfs.NewSnapshotter(root)
		}}, nil
	case "native":
		return name, runc.SnapshotterFactory{Name: name, New: native.NewSnapshotter}, nil
	default:
		return "", runc.SnapshotterFactory{}, fmt.Errorf("unknown snapshotter %q (want auto, overlayfs, fuse-overlayfs or native)", name)
	}
}
