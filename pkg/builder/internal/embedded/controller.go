//go:build linux

package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/remotes/docker"
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
	bksnapshot "github.com/moby/buildkit/snapshot"
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

// Config is what [Start] wires a controller from, in the spirit of
// BuildKit's control.Opt: pkg/builder resolves its options into it.
type Config struct {
	// Dir is the state dir; the worker keeps its data in
	// Dir.Worker(Snapshotter) and the solver its databases in Dir. Required.
	Dir statedir.Dir
	// Runc is the runc binary RUN steps run with. The default ("") is
	// BuildKit's search of PATH.
	Runc string
	// Snapshotter is overlayfs, fuse-overlayfs or native; the default ("" or
	// "auto") is what [ResolveSnapshotter] picks on Dir's filesystem.
	Snapshotter string
	// Rootless runs runc rootless, for a process in a user namespace (see
	// sandbox.InUserNamespace). The default (false) is for host root.
	Rootless bool
	// RegistryHosts resolves registries for pulls and cache imports and
	// exports. Required.
	RegistryHosts docker.RegistryHosts
	// GCPolicy is the worker's garbage collection policy. The default (nil)
	// collects nothing.
	GCPolicy []bkclient.PruneInfo
	// Limits bound the layers the worker unpacks. The default (zero) bounds
	// nothing.
	Limits Limits
	// Executor is how RUN steps run: ExecutorRunc (the default, ""),
	// ExecutorRuncNoSandbox or ExecutorInPlace (see pkg/sandbox's ladder).
	Executor string
	// Protect is what ExecutorInPlace leaves alone in / besides what
	// inplace.Protected finds: the state dir, the build context,
	// imgbuild's own files.
	Protect []string
	// SecretsDir is where ExecutorInPlace has secrets written: an existing
	// tmpfs.
	SecretsDir string
	// AllowExternalFrontends enables the gateway.v0 frontend (a
	// "# syntax=" image). The default (false) allows only the built-in
	// Dockerfile frontend.
	AllowExternalFrontends bool
}

// The executors of Config.Executor.
const (
	ExecutorRunc          = "runc"
	ExecutorRuncNoSandbox = "runc-no-sandbox"
	ExecutorInPlace       = "inplace"
)

// Controller is one in-process BuildKit: controller, gRPC server on an
// in-memory listener, and the client connected to it.
type Controller struct {
	ctrl        *control.Controller
	server      *grpc.Server
	listener    *bufconn.Listener
	client      *bkclient.Client
	snapshotter string
	gcPolicy    []bkclient.PruneInfo
	worker      *base.Worker
	// snapshotters are closed last, after everything that uses them.
	snapshotters []snapshots.Snapshotter
	// watchdog stops the RUN containers if this process is killed.
	watchdog *sandbox.Watchdog
}

// Start wires a controller the way cmd/buildkitd's newController and
// ociWorkerInitializer do, minus everything a single-process builder has no
// use for (CNI, tracing, the containerd worker, gha/s3/azblob caches).
// The caller has recovered the state dir and holds its lock.
func Start(ctx context.Context, cfg Config) (*Controller, error) {
	snName, snFactory, err := snapshotterFactory(cfg.Dir.Path(), cfg.Snapshotter)
	if err != nil {
		return nil, err
	}
	sm, err := session.NewManager()
	if err != nil {
		return nil, fmt.Errorf("creating session manager: %w", err)
	}
	hosts := cfg.RegistryHosts

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
	wopt, err := newWorkerOpt(cfg.Dir.Worker(snFactory.Name), snFactory, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating runc worker: %w", err)
	}
	wopt.RegistryHosts = hosts
	wopt.GCPolicy = cfg.GCPolicy
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
	if cfg.AllowExternalFrontends {
		gw, err := gateway.NewGatewayFrontend(wc.Infos(), nil)
		if err != nil {
			return nil, fmt.Errorf("creating gateway frontend: %w", err)
		}
		frontends["gateway.v0"] = gw
	}

	cacheStorage, err := bboltcachestorage.NewStore(cfg.Dir.CacheDB())
	if err != nil {
		return nil, fmt.Errorf("opening cache database: %w", err)
	}
	// Not synced per transaction, like containerdmeta.db (see newWorkerOpt).
	historyDB, err := boltutil.SafeOpen(cfg.Dir.HistoryDB(), 0o600, &bolt.Options{
		NoSync:         true,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		_ = cacheStorage.Close()
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
		_ = historyDB.Close()
		_ = cacheStorage.Close()
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
		_ = ctrl.Close()
		return nil, fmt.Errorf("connecting to embedded BuildKit: %w", err)
	}
	var dog *sandbox.Watchdog
	if we, ok := wopt.Executor.(*watchedExecutor); ok {
		dog = we.dog
	}
	return &Controller{ctrl: ctrl, server: server, listener: lis, client: c, snapshotter: snName, gcPolicy: cfg.GCPolicy, worker: w, snapshotters: created, watchdog: dog}, nil
}

// maxMsgSize matches containerd's defaults, which buildkitd uses too.
const maxMsgSize = 16 << 20

// Client is the client connected to the controller; Close closes it.
func (e *Controller) Client() *bkclient.Client { return e.client }

// Server is the controller's gRPC server, to serve on more listeners (the
// shared state dir's socket).
func (e *Controller) Server() *grpc.Server { return e.server }

// Worker is the runc worker, for its cache manager (cache mounts, disk
// usage) and garbage collection.
func (e *Controller) Worker() *base.Worker { return e.worker }

// Snapshotter is the resolved snapshotter's name.
func (e *Controller) Snapshotter() string { return e.snapshotter }

// GCPolicy is [Config.GCPolicy].
func (e *Controller) GCPolicy() []bkclient.PruneInfo { return e.gcPolicy }

// Close closes the client, stops the server and the controller, then closes
// the snapshotters and stops the watchdog.
func (e *Controller) Close() error {
	_ = e.client.Close() // the in-process connection: nothing to flush
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

// ResolveSnapshotter is the snapshotter name Start would use for name
// ("" or "auto" detects it) on the state dir at root, creating root.
func ResolveSnapshotter(root, name string) (string, error) {
	n, _, err := snapshotterFactory(root, name)
	return n, err
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

// NoMountsPatched checks that BuildKit was built with imgbuild's patch
// (third_party/buildkit) and IMGBUILD_NO_MOUNTS is set: a read-only local
// mount is then its source, with nothing mounted.
func NoMountsPatched() error {
	dir, err := os.MkdirTemp("", "imgbuild-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lm := bksnapshot.LocalMounterWithMounts([]mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "ro"}}})
	p, err := lm.Mount()
	if err != nil {
		return fmt.Errorf("a read-only local mount still mounts: %w", err)
	}
	defer lm.Unmount() //nolint:errcheck // a probe
	if p != dir {
		return fmt.Errorf("a read-only local mount of %s was mounted on %s", dir, p)
	}
	return nil
}
