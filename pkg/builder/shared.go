//go:build linux

package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/imgbuild/imgbuild/pkg/builder/internal/embedded"
	"github.com/imgbuild/imgbuild/pkg/registry"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// How processes share a state dir (see pkg/statedir's package doc for the
// design): the lock holder serves its controller on a unix socket in the
// state dir; later processes with the same worker settings build through it.

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes, NUL included).
const maxSocketPath = 107

// joinPoll is how often a process that cannot take the lock retries joining
// or locking.
const joinPoll = 100 * time.Millisecond

// pingTimeout bounds the check that a socket's owner is serving.
const pingTimeout = 5 * time.Second

// errOwnerClosing means a socket's owner accepted the connection but is no
// longer taking builds: it will release the lock shortly.
var errOwnerClosing = errors.New("state dir owner is shutting down")

// socketPath is the unix socket a lock holder with o's worker settings serves
// on. The name carries a digest of the settings that shape the build (runc,
// snapshotter, registry hosts, frontends), so a process only joins an owner
// that would build exactly as it would itself; a process with other settings
// waits for the lock instead. The GC policy is left out: it is the owner's
// housekeeping, and leaving it out lets prune and du join running builds.
// "" means the path is too long to share.
func socketPath(o *options) string {
	// Empty and unset settings digest alike.
	var insecure []string
	if len(o.insecure) > 0 {
		insecure = slices.Clone(o.insecure)
		slices.Sort(insecure)
	}
	hosts := o.hosts
	if len(hosts) == 0 {
		hosts = nil
	}
	b, _ := json.Marshal(struct {
		Runc, Snapshotter      string
		InsecureRunc, External bool
		Insecure               []string
		Hosts                  map[string]registry.HostConfig
	}{o.runc, o.snapshotter, o.allowInsecureRunc, o.allowExternalFrontends, insecure, hosts})
	sum := sha256.Sum256(b)
	p := filepath.Join(o.root, "imgbuild-"+hex.EncodeToString(sum[:6])+".sock")
	if len(p) > maxSocketPath {
		return ""
	}
	return p
}

// shareable reports whether this process may join another's controller. The
// cache mount import and export work on the worker's records directly, so a
// process asking for them must own the state dir.
func shareable(o *options) bool {
	return o.cacheMounts.From.IsZero() && o.cacheMounts.To.IsZero() && socketPath(o) != ""
}

// acquireOrJoin takes the state dir's lock, or joins the process holding it.
// Exactly one of the lock and the client is non-nil on success.
func acquireOrJoin(ctx context.Context, o *options) (*statedir.Lock, *bkclient.Client, error) {
	// Cache mount import and export work on the owner's records, so such a
	// build queues for the lock rather than failing on a busy state dir.
	wait := o.waitForLock || !o.cacheMounts.From.IsZero() || !o.cacheMounts.To.IsZero()
	sock := ""
	if shareable(o) {
		sock = socketPath(o)
	}
	waited, misses := false, 0
	for {
		lock, err := o.dir.Lock(ctx, statedir.LockOptions{})
		if err == nil {
			return lock, nil, nil
		}
		var inUse *statedir.InUseError
		if !errors.As(err, &inUse) {
			return nil, nil, err
		}
		if sock != "" {
			c, derr := dialShared(ctx, sock)
			if derr == nil {
				o.log.Infof("sharing state dir %s with pid %d", o.root, inUse.Holder.PID)
				return nil, c, nil
			}
			if errors.Is(derr, errOwnerClosing) {
				misses = 0 // the lock is about to be free
			} else {
				misses++
			}
		} else {
			misses++
		}
		// An owner removes its socket just before it unlocks; only a holder
		// that stays without a socket for a few polls is not one to join.
		if misses > 3 && !wait {
			return nil, nil, err
		}
		if misses > 3 && !waited {
			waited = true
			o.log.Infof("waiting for state dir %s, in use by pid %d (%s) since %s", o.root, inUse.Holder.PID, inUse.Holder.Command, inUse.Holder.Since.Format("15:04:05"))
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for state dir %s (held by %s): %w", o.root, inUse.Holder, context.Cause(ctx))
		case <-time.After(joinPoll):
		}
	}
}

// dialShared connects to the controller serving on sock and checks that it
// takes requests.
func dialShared(ctx context.Context, sock string) (*bkclient.Client, error) {
	// A plain dial first tells "nobody serves here" (no socket, or a socket
	// left by a killed owner) from an owner that is closing.
	var d net.Dialer
	probe, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	probe.Close()
	c, err := bkclient.New(ctx, "", bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}))
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := c.ListWorkers(pctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w: %w", errOwnerClosing, err)
	}
	return c, nil
}

// sharedServer serves the embedded controller to other processes on a unix
// socket and counts their connections: one connection is one build, held
// from the client's New to its Close.
type sharedServer struct {
	path string
	ln   net.Listener
	mu   sync.Mutex
	cond *sync.Cond
	// active is the number of client connections open.
	active int
	// closing refuses new connections once the owner has decided to stop.
	closing bool
}

// listenShared removes sockets left by a killed owner (the caller holds the
// lock, so any socket in the state dir is stale) and listens on path. The
// owner listens as soon as it has the lock, before BuildKit starts: a process
// arriving meanwhile connects and waits for the server instead of taking the
// socket's absence for a holder that does not share.
func listenShared(root, path string) (net.Listener, error) {
	stale, _ := filepath.Glob(filepath.Join(root, "imgbuild-*.sock"))
	for _, s := range stale {
		_ = os.Remove(s)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("serving the state dir to other builds: %w", err)
	}
	return ln, nil
}

// serveShared serves the embedded controller's gRPC server on ln, which
// listens on path.
func serveShared(srv *grpc.Server, path string, ln net.Listener) *sharedServer {
	s := &sharedServer{path: path}
	s.cond = sync.NewCond(&s.mu)
	s.ln = &countingListener{Listener: ln, s: s}
	go srv.Serve(s.ln) //nolint:errcheck // returns when the listener closes
	return s
}

// listenPrivate listens on a unix socket at path that only this user can
// connect to, from the first instant: the socket is made with mode 0600 in a
// fresh 0700 directory and then renamed into place, so the process umask
// (BuildKit runs with 0) never exposes it.
func listenPrivate(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	// The listener must not unlink tmp when closed: by then it is path.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// drain waits until no client is connected, then refuses new ones. Clients
// that arrive later find the owner closing and wait for the lock.
func (s *sharedServer) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.active > 0 {
		s.cond.Wait()
	}
	s.closing = true
}

// close stops listening and removes the socket.
func (s *sharedServer) close() error {
	err := s.ln.Close()
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

type countingListener struct {
	net.Listener
	s *sharedServer
}

// Accept counts each connection, and closes it at once while the owner is
// closing.
func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !samePeer(c) {
			c.Close()
			continue
		}
		l.s.mu.Lock()
		if l.s.closing {
			l.s.mu.Unlock()
			c.Close()
			continue
		}
		l.s.active++
		l.s.mu.Unlock()
		return &countedConn{Conn: c, s: l.s}, nil
	}
}

type countedConn struct {
	net.Conn
	s    *sharedServer
	once sync.Once
}

// Close implements net.Conn, uncounting the connection once.
func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.active--
		c.s.cond.Broadcast()
		c.s.mu.Unlock()
	})
	return err
}

// processStore gives the image store's ingests refs of their own per process:
// containerd's local store locks an ingest only within a process, and
// processes sharing a state dir export the same blobs at the same time. Each
// ingest commits by an atomic rename, so identical blobs race harmlessly.
type processStore struct {
	content.Store
}

// Writer implements content.Ingester.
func (s processStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	opts = append(opts, content.WithRef(fmt.Sprintf("%s@%d", wo.Ref, os.Getpid())))
	return s.Store.Writer(ctx, opts...)
}

// open takes the state dir or joins its owner, starting the embedded
// controller (and serving it) when it takes it.
func (b *Builder) open(ctx context.Context) error {
	o := &b.opts
	lock, joined, err := acquireOrJoin(ctx, o)
	if err != nil {
		return err
	}
	processDefaults()
	if joined != nil {
		// The owner resolved the same setting on the same state dir.
		sn, err := embedded.ResolveSnapshotter(o.root, o.snapshotter)
		if err != nil {
			_ = joined.Close()
			return err
		}
		b.bk, b.client, b.snapshotter, b.sources, b.joined = nil, joined, sn, nil, true
		return nil
	}
	var ln net.Listener
	if shareable(o) {
		if ln, err = listenShared(o.root, socketPath(o)); err != nil {
			o.log.WithError(err).Warn("other builds on this state dir will wait instead of sharing it")
		}
	}
	// release undoes the above when starting fails.
	release := func() {
		if ln != nil {
			ln.Close()
			_ = os.Remove(socketPath(o))
		}
		_ = lock.Release()
	}
	if sandbox.InUserNamespace() {
		if err := sandbox.RootlessRuntimeDir(o.root); err != nil {
			release()
			return err
		}
	}
	bk, sources, err := startEmbedded(ctx, o)
	if err != nil {
		release()
		return err
	}
	if err := o.importCacheMounts(ctx, bk.Worker().CacheManager()); err != nil {
		_ = bk.Close()
		release()
		return err
	}
	var shared *sharedServer
	if ln != nil {
		shared = serveShared(bk.Server(), socketPath(o), ln)
	}
	o.log.WithFields(logrus.Fields{"root": o.root, "snapshotter": bk.Snapshotter(), "runc": o.runc, "runc-version": b.runcVer}).Debug("embedded BuildKit started")
	b.lock, b.bk, b.shared, b.joined = lock, bk, shared, false
	b.client, b.snapshotter, b.sources = bk.Client(), bk.Snapshotter(), sources
	return nil
}

// maxRejoins bounds how often one build starts over after losing the
// process it joined.
const maxRejoins = 2

// ownerLost reports whether a joined build failed because the process
// serving the state dir went away (killed, or its machine's OOM killer)
// rather than because of the build itself.
func (b *Builder) ownerLost(ctx context.Context, err error) bool {
	return b.joined && ctx.Err() == nil && grpcerrors.Code(err) == codes.Unavailable
}

// rejoin replaces a joined build's lost connection: the kernel released the
// dead owner's lock, so this process takes the state dir (recovering what
// the owner left) or joins whichever process took it first.
func (b *Builder) rejoin(ctx context.Context) error {
	b.opts.log.Warn("the process serving this state dir is gone; building again on the next one")
	_ = b.client.Close() // the owner is gone already
	return b.open(ctx)
}

// samePeer reports whether the process on the other end of c runs as this
// process's user (or root): the socket's mode already says so, and this
// keeps it true if the state dir's permissions are loosened.
func samePeer(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid()
}
