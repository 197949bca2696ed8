//go:build linux

package inplace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/continuity/fs"
	"github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/executor/oci"
	resourcestypes "github.com/moby/buildkit/executor/resources/types"
	gatewayapi "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/pb"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// Executor runs RUN steps in this container's own root filesystem, with no
// namespace and no mount (see the package doc). Steps run one at a time.
type Executor struct {
	root string
	prot *protected
	// SecretsDir is where BuildKit's patched secret mounts put their files
	// (IMGBUILD_SECRETS_DIR); a mount from there is linked, not copied, so
	// that the secret stays in memory.
	secretsDir string

	mu sync.Mutex
}

var _ executor.Executor = (*Executor)(nil)

// New returns the executor for root ("/"), leaving protect and what
// [Protected] finds alone.
func New(root, secretsDir string, protect []string) (*Executor, error) {
	sys, err := Protected()
	if err != nil {
		return nil, err
	}
	return &Executor{root: root, prot: newProtected(append(sys, protect...)), secretsDir: secretsDir}, nil
}

// Protected is what the in-place executor never syncs, besides the paths a
// caller adds (state dir, build context, imgbuild's own files): the
// kernel's file systems, what the container runtime put in (mount points,
// /etc/hosts and friends) and /var/run, as kaniko ignores them.
func Protected() ([]string, error) {
	out := []string{"proc", "sys", "dev", "var/run", "etc/resolv.conf", "etc/hosts", "etc/hostname", ".dockerenv", "run/.containerenv"}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] == "/" {
			continue
		}
		out = append(out, unescapeMountinfo(f[4]))
	}
	return out, nil
}

// unescapeMountinfo undoes the octal escapes of /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Run implements executor.Executor.
func (e *Executor) Run(ctx context.Context, id string, root executor.Mount, mounts []executor.Mount, process executor.ProcessInfo, started chan<- struct{}) (resourcestypes.Recorder, error) {
	startedOnce := sync.Once{}
	closeStarted := func() {
		if started != nil {
			startedOnce.Do(func() { close(started) })
		}
	}
	defer closeStarted()
	meta := process.Meta
	if meta.NetMode == pb.NetMode_NONE {
		return nil, errors.New("RUN --network=none needs a network namespace, which the in-place executor cannot create")
	}
	if meta.Proxy != nil {
		return nil, errors.New("a RUN network proxy policy needs a network namespace, which the in-place executor cannot create")
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	snap, release, err := mountDir(ctx, root.Src, false)
	if err != nil {
		return nil, err
	}
	defer release()

	// The root is made to hold the step's snapshot, minus what the step
	// mounts, which is put in after.
	var dests []string
	for _, m := range mounts {
		dests = append(dests, m.Dest)
	}
	stepProt := e.prot.with(dests...)
	start := time.Now()
	in := &syncer{src: snap, dst: e.root, prot: stepProt}
	if err := in.run(); err != nil {
		return nil, fmt.Errorf("making %s hold the step's root filesystem: %w", e.root, err)
	}
	cleanupMounts, err := e.putMounts(ctx, mounts)
	if err != nil {
		cleanupMounts()
		return nil, err
	}
	rec, err := recordTree(e.root, stepProt)
	if err != nil {
		cleanupMounts()
		return nil, err
	}
	logrus.Debugf("inplace: %d entries of %s synced in %s", in.written, e.root, time.Since(start))

	runErr := e.exec(ctx, meta, process, closeStarted)
	cleanupMounts()

	start = time.Now()
	out := &syncer{src: e.root, dst: snap, prot: stepProt, unchanged: unchangedSince(rec)}
	if err := out.run(); err != nil {
		return nil, fmt.Errorf("saving the step's changes to its snapshot: %w", err)
	}
	logrus.Debugf("inplace: %d changed entries saved in %s", out.written, time.Since(start))
	return nil, exitError(ctx, runErr, meta.ValidExitCodes)
}

// Exec implements executor.Executor: there is no running container to
// enter.
func (e *Executor) Exec(context.Context, string, executor.ProcessInfo) error {
	return errors.New("the in-place executor cannot run a process in a running step")
}

func (e *Executor) exec(ctx context.Context, meta executor.Meta, process executor.ProcessInfo, started func()) error {
	uid, gid, sgids, err := oci.GetUser(e.root, meta.User)
	if err != nil {
		return fmt.Errorf("resolving USER %q: %w", meta.User, err)
	}
	if os.Geteuid() != 0 && (int(uid) != os.Geteuid() || int(gid) != os.Getegid()) {
		return fmt.Errorf("USER %q (uid %d) needs root: the in-place executor runs as uid %d", meta.User, uid, os.Geteuid())
	}
	cwd, err := fs.RootPath(e.root, meta.Cwd)
	if err != nil {
		return fmt.Errorf("working dir %s: %w", meta.Cwd, err)
	}
	if _, err := os.Stat(cwd); err != nil {
		if err := mkdirAllOwned(cwd, int(uid), int(gid)); err != nil {
			return fmt.Errorf("creating working directory %s: %w", meta.Cwd, err)
		}
	}
	if len(meta.Args) == 0 {
		return errors.New("no command to run")
	}
	env := meta.Env
	if !slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "PATH=") }) {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	path, err := lookPath(e.root, meta.Args[0], env)
	if err != nil {
		return err
	}
	self, args, marker, err := sandbox.StepCommand(path, append([]string{meta.Args[0]}, meta.Args[1:]...))
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Args = args
	cmd.Dir = cwd
	cmd.Env = append(slices.Clone(env), marker)
	if process.Stdin != nil {
		cmd.Stdin = process.Stdin
	}
	cmd.Stdout, cmd.Stderr = process.Stdout, process.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: sgids}
	}
	// The step's whole process group goes with it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", meta.Args[0], err)
	}
	started()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig, ok := <-process.Signal:
				if !ok {
					return
				}
				_ = syscall.Kill(-cmd.Process.Pid, sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	// What the step left running in its group stops with it, as in a
	// container.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return err
}

// putMounts makes each of the step's mounts appear at its target: a link to
// a writable mount's directory (a cache mount) or a secret, a copy of a
// read-only one, an empty directory for a tmpfs. The cleanup removes them
// and any parent directory made for them.
func (e *Executor) putMounts(ctx context.Context, mounts []executor.Mount) (func(), error) {
	var undo []func()
	cleanup := func() {
		for _, f := range slices.Backward(undo) {
			f()
		}
	}
	for _, m := range mounts {
		target, err := fs.RootPath(e.root, m.Dest)
		if err != nil {
			return cleanup, fmt.Errorf("mount target %s: %w", m.Dest, err)
		}
		mref, err := m.Src.Mount(ctx, m.Readonly)
		if err != nil {
			return cleanup, err
		}
		mnts, release, err := mref.Mount()
		if err != nil {
			return cleanup, err
		}
		if release != nil {
			undo = append(undo, func() { _ = release() })
		}
		if err := os.RemoveAll(target); err != nil {
			return cleanup, err
		}
		made, err := mkdirParents(e.root, filepath.Dir(target))
		if err != nil {
			return cleanup, err
		}
		undo = append(undo, func() {
			_ = os.RemoveAll(target)
			for _, d := range slices.Backward(made) {
				_ = os.Remove(d) // only if still empty
			}
		})
		switch {
		case len(mnts) == 1 && mnts[0].Type == "tmpfs":
			if err := os.Mkdir(target, 0o1777); err != nil {
				return cleanup, err
			}
		case len(mnts) == 1 && (mnts[0].Type == "bind" || mnts[0].Type == "rbind"):
			src, err := fs.RootPath(mnts[0].Source, m.Selector)
			if err != nil {
				return cleanup, fmt.Errorf("mount source %s: %w", m.Selector, err)
			}
			if !m.Readonly && !slices.Contains(mnts[0].Options, "ro") || e.isLinkable(src) {
				if err := os.Symlink(src, target); err != nil {
					return cleanup, err
				}
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(src, &st); err != nil {
				return cleanup, fmt.Errorf("mount source %s: %w", src, err)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := os.Mkdir(target, 0o700); err != nil {
					return cleanup, err
				}
				cp := &syncer{src: src, dst: target, prot: newProtected(nil)}
				if err := cp.run(); err != nil {
					return cleanup, err
				}
				if err := unix.Lchown(target, int(st.Uid), int(st.Gid)); err == nil {
					_ = unix.Chmod(target, st.Mode&0o7777)
				}
				continue
			}
			if err := copyFile(src, target); err != nil {
				return cleanup, err
			}
			_ = unix.Lchown(target, int(st.Uid), int(st.Gid))
			_ = unix.Chmod(target, st.Mode&0o7777)
		default:
			return cleanup, fmt.Errorf("mount at %s: the in-place executor cannot provide %s", m.Dest, describe(mnts))
		}
	}
	return cleanup, nil
}

// isLinkable reports whether a read-only mount source may be linked rather
// than copied: a secret (kept in memory) or a socket (SSH agent).
func (e *Executor) isLinkable(src string) bool {
	if e.secretsDir != "" && strings.HasPrefix(src, e.secretsDir+"/") {
		return true
	}
	fi, err := os.Lstat(src)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

func describe(mnts []mount.Mount) string {
	var types []string
	for _, m := range mnts {
		types = append(types, m.Type)
	}
	return strings.Join(types, "+") + " mounts"
}

// mountDir is the directory of a native snapshot's mount: its source, with
// nothing mounted.
func mountDir(ctx context.Context, src executor.Mountable, readonly bool) (string, func(), error) {
	mref, err := src.Mount(ctx, readonly)
	if err != nil {
		return "", func() {}, err
	}
	mnts, release, err := mref.Mount()
	if err != nil {
		return "", func() {}, err
	}
	rel := func() {
		if release != nil {
			_ = release()
		}
	}
	if len(mnts) != 1 || (mnts[0].Type != "bind" && mnts[0].Type != "rbind") {
		rel()
		return "", func() {}, fmt.Errorf("the in-place executor needs the native snapshotter's directories, not %s", describe(mnts))
	}
	return mnts[0].Source, rel, nil
}

// mkdirParents makes dir and its missing parents under root, returning the
// ones it made (outermost first).
func mkdirParents(root, dir string) ([]string, error) {
	var made []string
	for d := dir; d != root && d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		made = append([]string{d}, made...)
	}
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return made, err
		}
	}
	return made, nil
}

func mkdirAllOwned(dir string, uid, gid int) error {
	made, err := mkdirParents("/", dir)
	if err != nil {
		return err
	}
	for _, d := range made {
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// lookPath finds a step's command by the step's own PATH, in root.
func lookPath(root, name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var pathEnv string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(root, dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return filepath.Join(dir, name), nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH", name)
}

// exitError is runcexecutor's: the step's exit status as BuildKit reports
// it, nil for a valid one.
func exitError(ctx context.Context, err error, valid []int) error {
	code := 0
	if err != nil {
		code = int(gatewayapi.UnknownExitStatus)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	}
	if (valid == nil && code == 0) || slices.Contains(valid, code) {
		return nil
	}
	xe := &gatewayapi.ExitError{ExitCode: uint32(code)}
	if code == int(gatewayapi.UnknownExitStatus) {
		xe.Err = err
	}
	if ctx.Err() != nil {
		xe.Err = context.Cause(ctx)
	}
	return xe
}
