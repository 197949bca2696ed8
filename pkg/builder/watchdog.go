//go:build linux

package builder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/moby/buildkit/executor"
	resourcestypes "github.com/moby/buildkit/executor/resources/types"
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

// watchdog starts the watchdog process once and tells it when this process
// stops normally.
type watchdog struct {
	dir, runc string
	once      sync.Once
	err       error
	w         *os.File // the pipe's write end
}

// start starts the watchdog unless it runs.
func (d *watchdog) start() error {
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

// stop tells the watchdog that this process ended its containers itself.
func (d *watchdog) stop() {
	if d.w != nil {
		_, _ = d.w.Write([]byte{'1'})
		d.w.Close()
	}
}

// WatchdogMain must be called first thing in main: in the watchdog process
// (see [watchdog]), it waits until the process that started it ends, deletes
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
	entries, _ := os.ReadDir(dir)
	runc := os.Getenv(watchdogRuncEnv)
	var wg sync.WaitGroup
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			removeHalfCreated(context.Background(), runc, e.Name())
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// watchedExecutor starts the watchdog before the first container.
type watchedExecutor struct {
	executor.Executor
	dog *watchdog
}

var _ executor.Executor = (*watchedExecutor)(nil)

// Run implements executor.Executor.
func (e *watchedExecutor) Run(ctx context.Context, id string, rootfs executor.Mount, mounts []executor.Mount, process executor.ProcessInfo, started chan<- struct{}) (resourcestypes.Recorder, error) {
	if err := e.dog.start(); err != nil {
		return nil, fmt.Errorf("starting the watchdog that stops RUN steps if imgbuild is killed: %w", err)
	}
	return e.Executor.Run(ctx, id, rootfs, mounts, process, started)
}

// newWatchedExecutor wraps the runc executor whose state is in workerRoot.
func newWatchedExecutor(exe executor.Executor, workerRoot, runc string) *watchedExecutor {
	return &watchedExecutor{Executor: exe, dog: &watchdog{dir: filepath.Join(workerRoot, "executor"), runc: runc}}
}
