//go:build linux

package sandbox

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A killed imgbuild must not leave its RUN steps running. BuildKit starts
// runc with a parent-death SIGKILL, which kills runc but not the container
// it started ("this can still leak the process", runcexecutor): the step's
// processes ran on under pid 1 until the next start's recoverState.
//
// So the first RUN step of a process starts a watchdog: this executable
// again, holding the read end of a pipe whose write end only this process
// has. The kernel closes it when the process dies, however it dies; the
// watchdog then deletes, with `runc delete --force`, every container whose
// bundle is in the executor's dir at that moment (only the state dir's owner
// runs containers, and a next owner needs far longer to start its first).
// Each container's init is pid 1 of its own pid namespace
// (oci.ProcessSandbox), so killing it ends every process of the step.
//
// One watchdog per process instead of a supervising runc shim per RUN step:
// the shim (a subreaper that kills what is below it when its parent dies)
// worked, but starting this binary costs tens of milliseconds of CPU, and
// BuildKit runs runc several times per step, which made a build of 12 small
// RUN steps take 70% more CPU. Builds that run no container start no
// watchdog.
const (
	watchdogEnv     = "_IMGBUILD_WATCHDOG" // the executor dir to watch
	watchdogRuncEnv = "_IMGBUILD_WATCHDOG_RUNC"
)

// Watchdog starts the watchdog process once and tells it when this process
// stops normally.
type Watchdog struct {
	dir, runc string
	once      sync.Once
	err       error
	w         *os.File // the pipe's write end
}

// NewWatchdog returns a watchdog, not yet started, for the containers whose
// bundles runc (the binary at runcPath) has in executorDir.
func NewWatchdog(executorDir, runcPath string) *Watchdog {
	return &Watchdog{dir: executorDir, runc: runcPath}
}

// Start starts the watchdog process unless it runs; call it before the first
// container starts.
func (d *Watchdog) Start() error {
	d.once.Do(func() {
		self, err := os.Executable()
		if err != nil {
			d.err = err
			return
		}
		r, w, err := os.Pipe()
		if err != nil {
			d.err = err
			return
		}
		defer r.Close()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), watchdogEnv+"="+d.dir, watchdogRuncEnv+"="+d.runc)
		cmd.ExtraFiles = []*os.File{r}
		// Its own process group: a kill of imgbuild's group (as CI runners
		// do) leaves the watchdog to clean up; runc has its own group too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			w.Close()
			d.err = err
			return
		}
		d.w = w
		go cmd.Wait() //nolint:errcheck // only reaps it
	})
	return d.err
}

// Stop tells the watchdog that this process ended its containers itself.
func (d *Watchdog) Stop() {
	if d.w != nil {
		_, _ = d.w.Write([]byte{'1'})
		d.w.Close()
	}
}

// WatchdogMain must be called first thing in main: in the watchdog process
// (see [Watchdog]), it waits until the process that started it ends, deletes
// the containers that process left running, and exits. Elsewhere it does
// nothing.
func WatchdogMain() {
	dir := os.Getenv(watchdogEnv)
	if dir == "" {
		return
	}
	pipe := os.NewFile(3, "watchdog")
	b := make([]byte, 1)
	if n, _ := pipe.Read(b); n == 1 {
		os.Exit(0) // a normal end: BuildKit ended every container
	}
	runc := os.Getenv(watchdogRuncEnv)
	// The containers are the ones in the executor dir now. Another imgbuild
	// may take the state dir over and start its own there at once, so the
	// second pass, which catches what a runc killed mid-create made after
	// the first (a cgroup), revisits only these.
	var ids []string
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				ids = append(ids, e.Name())
			}
		}
	}
	for pass := range 2 {
		if pass > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				RemoveHalfCreated(context.Background(), runc, id)
			}()
		}
		wg.Wait()
	}
	os.Exit(0)
}

// containerTimeout bounds each runc call: cleaning up must not hang on a
// wedged runc.
const containerTimeout = 10 * time.Second

// RemoveHalfCreated removes what runc leaves of a container it was killed
// while creating, which `runc list` cannot show: its state dir (without a
// state.json) and its cgroups (BuildKit puts them at buildkit/ID). Processes
// still in those cgroups are killed first. It deletes a running container
// too (`runc delete --force`).
func RemoveHalfCreated(ctx context.Context, runcPath, id string) {
	ctx, cancel := context.WithTimeout(ctx, containerTimeout)
	defer cancel()
	_ = exec.CommandContext(ctx, runcPath, "delete", "--force", id).Run()
	if dir := runcStateDir(); dir != "" {
		_ = os.RemoveAll(filepath.Join(dir, id))
	}
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "buildkit", id))
	if v2 := filepath.Join("/sys/fs/cgroup", "buildkit", id); fileExists(v2) {
		cgroups = append(cgroups, v2)
	}
	for _, cg := range cgroups {
		if b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		// A cgroup dir is removed with rmdir once empty; its killed
		// processes may take a moment to leave it (over 200 ms on a
		// loaded machine).
		for range 100 {
			if err := syscall.Rmdir(cg); err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// RemoveOrphanCgroups removes the empty cgroups BuildKit's RUN containers
// (cgroup parent "buildkit") left behind when their runc was killed while it
// created them: runc has no state for them any more, so neither runc delete
// nor a later imgbuild knows their ID. A cgroup is only removed when it is
// empty and runc has no state under its name, which a container another
// process is creating always has.
func RemoveOrphanCgroups() {
	state := runcStateDir()
	if state == "" {
		return
	}
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "buildkit", "*"))
	v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "buildkit", "*"))
	for _, cg := range append(cgroups, v2...) {
		if fi, err := os.Stat(cg); err != nil || !fi.IsDir() || fileExists(filepath.Join(state, filepath.Base(cg))) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err != nil || len(strings.TrimSpace(string(b))) > 0 {
			continue
		}
		_ = syscall.Rmdir(cg) // fails, harmlessly, if a process joined meanwhile
	}
}

// runcStateDir is runc's default --root, which BuildKit uses: /run/runc for
// root, $XDG_RUNTIME_DIR/runc otherwise.
func runcStateDir() string {
	if os.Geteuid() == 0 && !InUserNamespace() {
		return "/run/runc"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "runc")
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
