//go:build linux

package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// Rootless builds: a non-root imgbuild re-executes itself in a new user and
// mount namespace in which it is root, the way rootlesskit and img do, so
// that BuildKit's rootless runc worker can mount overlayfs and run RUN steps
// without any privilege on the host.
//
// The child is told it is the child by usernsEnv; it waits on the pipe in
// fd 3 until the parent has written its ID maps (newuidmap/newgidmap need the
// child's pid, so they can only run after it exists).
const usernsEnv = "_IMGBUILD_USERNS_CHILD"

// usernsParentEnv is the parent's pid: a child whose parent is killed is
// killed too (see dieWithParent).
const usernsParentEnv = "_IMGBUILD_USERNS_PARENT"

// NeedsUserNamespace reports whether this process must enter a user
// namespace before it can build: it is not root, or it is root without
// CAP_SYS_ADMIN (a Kubernetes pod with `hostUsers: false` and no added
// capabilities), so it cannot mount. A new user namespace gives it every
// capability over the mounts of its own new mount namespace.
func NeedsUserNamespace() bool {
	if os.Getenv(usernsEnv) != "" {
		return false
	}
	return os.Geteuid() != 0 || !hasCapSysAdmin()
}

// hasCapSysAdmin reads the effective capability set of this process.
func hasCapSysAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_ADMIN) != 0
		}
	}
	return false
}

// InUserNamespace reports whether BuildKit runs rootless: in a user
// namespace (ours, a rootless pod's or `hostUsers: false`).
func InUserNamespace() bool { return userns.RunningInUserNS() }

// UserNamespaceChildInit must be called first thing in main: in the child
// re-executed by [RunInUserNamespace], it waits until the ID maps are
// written. Elsewhere it does nothing.
func UserNamespaceChildInit() {
	switch os.Getenv(usernsEnv) {
	case "1":
	case "2":
		dieWithParent()
		return
	default:
		return
	}
	sync := os.NewFile(3, "userns-sync")
	if sync == nil {
		return
	}
	b := make([]byte, 1)
	n, _ := sync.Read(b)
	sync.Close()
	if n != 1 || b[0] != '1' {
		fmt.Fprintln(os.Stderr, "ERROR: setting up the user namespace failed in the parent")
		os.Exit(1)
	}
	// This process was exec'd before its uid was mapped, so the kernel
	// dropped its capabilities in the namespace. Exec again, now as uid 0
	// there, to get them back.
	self, err := os.Executable()
	if err == nil {
		err = os.Setenv(usernsEnv, "2")
	}
	if err == nil {
		err = syscall.Exec(self, os.Args, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "ERROR: re-executing in the user namespace: %v\n", err)
	os.Exit(1)
}

// dieWithParent makes the kernel SIGKILL this process, the build in the user
// namespace, when its parent (the imgbuild the user or CI runner started) is
// killed, as if the signal had reached it: its watchdog then stops its RUN
// steps. It is set here, after the last exec, which clears a parent-death
// signal set before because it gains capabilities.
func dieWithParent() {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "ERROR: setting the parent-death signal: %v\n", err)
		os.Exit(1)
	}
	// The parent may have died before the prctl.
	if p, err := strconv.Atoi(os.Getenv(usernsParentEnv)); err == nil && os.Getppid() != p {
		os.Exit(1)
	}
}

// idMap is one line of a uid_map or gid_map.
type idMap struct{ inside, outside, size int }

// RunInUserNamespace re-executes the current binary with args in a new user
// and mount namespace where the caller is root, and returns its exit code.
// It checks the machine first, so that one that cannot do it gets a
// [*PreflightError] with the fix, not a kernel error; warn receives notes on
// a degraded set-up (such as mapping a single ID).
//
// With hide, this process hides from RUN steps (see HideFromSteps) once the
// child's ID maps are written: a non-dumpable parent could not write them.
func RunInUserNamespace(ctx context.Context, args []string, env []string, hide bool, warn func(string)) (int, error) {
	plan, err := preflight()
	if err != nil {
		return 1, err
	}
	for _, n := range plan.notes {
		warn(n)
	}
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	// The child's parent-death signal (see dieWithParent) fires when the
	// thread that started it exits, not only the process.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, w, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	// args are the command after any argv[0] dispatch (/kaniko/executor
	// adds "executor", a buildctl link "buildctl"): the child must not
	// dispatch again.
	cmd.Args[0] = "imgbuild"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(env, usernsEnv+"=1", usernsParentEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS}
	switch {
	case plan.identity != nil:
		// Root (with CAP_SETUID/CAP_SETGID) maps the IDs it has itself.
		cmd.SysProcAttr.UidMappings = plan.identity
		cmd.SysProcAttr.GidMappings = plan.identityGID
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
	case !plan.helpers:
		// Without newuidmap, a process may map only its own IDs, and the
		// kernel writes them before exec.
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	// Cancelling the build must reach the child's BuildKit as a signal it
	// handles, not a kill that leaves runc behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return 1, startError(err, plan)
	}
	r.Close()
	if plan.helpers && plan.identity == nil {
		if err := writeIDMaps(cmd.Process.Pid, plan); err != nil {
			// The child exits on "0" (or on the pipe's close).
			_, _ = w.Write([]byte("0"))
			w.Close()
			_ = cmd.Wait()
			return 1, err
		}
	}
	// A failed write closes the pipe, on which the child exits: its
	// status below says so.
	_, _ = w.Write([]byte("1"))
	w.Close()
	if hide {
		if err := HideFromSteps(); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 1, fmt.Errorf("hiding this process from RUN steps: %w", err)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

func writeIDMaps(pid int, p *userNSPlan) error {
	for _, m := range []struct {
		tool string
		maps []idMap
	}{{"newuidmap", p.uids}, {"newgidmap", p.gids}} {
		args := []string{strconv.Itoa(pid)}
		for _, e := range m.maps {
			args = append(args, strconv.Itoa(e.inside), strconv.Itoa(e.outside), strconv.Itoa(e.size))
		}
		if out, err := exec.Command(m.tool, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", m.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// userNSPlan is how the user namespace will be mapped.
type userNSPlan struct {
	helpers    bool // newuidmap/newgidmap and subordinate IDs are available
	uids, gids []idMap
	// identity maps the IDs this (root) process has onto themselves.
	identity, identityGID []syscall.SysProcIDMap
	notes                 []string
}

func (p *userNSPlan) fixHint() string {
	if len(p.notes) == 0 {
		return ""
	}
	return "\n" + strings.Join(p.notes, "\n")
}

// PreflightError is a machine that cannot build rootless, with the setting
// that fixes it; [RunInUserNamespace] returns it.
type PreflightError struct {
	Problem string
	Fix     string
}

func (e *PreflightError) Error() string {
	return fmt.Sprintf("rootless build not possible: %s\nto fix: %s", e.Problem, e.Fix)
}

// procFile is where preflight reads kernel settings; a variable for tests.
var procFile = func(p string) ([]byte, error) { return os.ReadFile(p) }

// preflight checks, before any pull, that this machine lets an unprivileged
// user build: user namespaces enabled and not blocked by the distribution's
// AppArmor setting, and how IDs can be mapped. Its errors name the sysctl or
// Kubernetes securityContext that fixes them.
func preflight() (*userNSPlan, error) {
	if b, err := procFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return nil, &PreflightError{
			Problem: "user namespaces are disabled (user.max_user_namespaces = 0)",
			Fix:     "sysctl -w user.max_user_namespaces=15000 on the node",
		}
	}
	if b, err := procFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return nil, &PreflightError{
			Problem: "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
			Fix:     "sysctl -w kernel.unprivileged_userns_clone=1 on the node",
		}
	}
	if b, err := procFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil, &PreflightError{
			Problem: "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
			Fix:     "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns for imgbuild; in Kubernetes: securityContext.appArmorProfile.type: Unconfined",
		}
	}
	plan := &userNSPlan{}
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		plan.identity = identityMap("/proc/self/uid_map")
		plan.identityGID = identityMap("/proc/self/gid_map")
		if plan.identity != nil && plan.identityGID != nil {
			return plan, nil
		}
	}
	u, _ := user.LookupId(strconv.Itoa(uid))
	_, errU := exec.LookPath("newuidmap")
	_, errG := exec.LookPath("newgidmap")
	subU := subIDs("/etc/subuid", u, uid)
	subG := subIDs("/etc/subgid", u, gid)
	switch {
	case errU != nil || errG != nil:
		plan.notes = append(plan.notes, "newuidmap/newgidmap not found (Debian: apt-get install uidmap); mapping only your own uid and gid, so files owned by other users in base images cannot be created")
	case subU == nil || subG == nil:
		plan.notes = append(plan.notes, fmt.Sprintf("no range for uid %d in /etc/subuid or /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER); mapping only your own uid and gid", uid))
	default:
		plan.helpers = true
		plan.uids = []idMap{{0, uid, 1}, {1, subU.outside, subU.size}}
		plan.gids = []idMap{{0, gid, 1}, {1, subG.outside, subG.size}}
	}
	return plan, nil
}

// subIDs finds the first subordinate ID range of u (by name or number) in
// an /etc/subuid-style file.
func subIDs(path string, u *user.User, id int) *idMap {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.Split(strings.TrimSpace(s.Text()), ":")
		if len(parts) != 3 {
			continue
		}
		if parts[0] != strconv.Itoa(id) && (u == nil || parts[0] != u.Username) {
			continue
		}
		start, err1 := strconv.Atoi(parts[1])
		size, err2 := strconv.Atoi(parts[2])
		if err1 == nil && err2 == nil && size > 0 {
			return &idMap{1, start, size}
		}
	}
	return nil
}

// RootlessRuntimeDir points runc's state at a directory this process owns,
// root/run unless $XDG_RUNTIME_DIR is writable: in a user namespace runc
// keeps it under $XDG_RUNTIME_DIR, and the default /run/runc belongs to the
// host's root.
func RootlessRuntimeDir(root string) error {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && unix.Access(d, unix.W_OK) == nil {
		return nil
	}
	d := filepath.Join(root, "run")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("creating runtime dir: %w", err)
	}
	return os.Setenv("XDG_RUNTIME_DIR", d)
}

// identityMap maps every ID of this process's user namespace onto itself.
func identityMap(path string) []syscall.SysProcIDMap {
	b, err := procFile(path)
	if err != nil {
		return nil
	}
	var out []syscall.SysProcIDMap
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		inside, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		if size > 1<<31 {
			size = 1 << 31
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: inside, HostID: inside, Size: size})
	}
	return out
}

// startError explains why the kernel refused to create the user namespace.
func startError(err error, plan *userNSPlan) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return &PreflightError{
			Problem: fmt.Sprintf("creating a user namespace: %v: the limit of user namespaces is reached", err),
			Fix:     "sysctl -w user.max_user_namespaces=15000 on the node",
		}
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return &PreflightError{
			Problem: fmt.Sprintf("creating a user namespace: %v: a seccomp profile or AppArmor blocks unshare(CLONE_NEWUSER)", err),
			Fix:     "run unconfined: in Kubernetes, securityContext.seccompProfile.type: Unconfined and securityContext.appArmorProfile.type: Unconfined; with docker or podman, --security-opt seccomp=unconfined --security-opt apparmor=unconfined",
		}
	}
	return fmt.Errorf("creating a user namespace: %w%s", err, plan.fixHint())
}
