//go:build linux

package embedded

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/moby/buildkit/executor"
	resourcestypes "github.com/moby/buildkit/executor/resources/types"

	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// watchedExecutor starts the watchdog (see [sandbox.Watchdog]), which stops
// the RUN containers if this process is killed, before the first container.
type watchedExecutor struct {
	executor.Executor
	dog *sandbox.Watchdog
}

var _ executor.Executor = (*watchedExecutor)(nil)

// Run implements executor.Executor.
func (e *watchedExecutor) Run(ctx context.Context, id string, rootfs executor.Mount, mounts []executor.Mount, process executor.ProcessInfo, started chan<- struct{}) (resourcestypes.Recorder, error) {
	if err := e.dog.Start(); err != nil {
		return nil, fmt.Errorf("starting the watchdog that stops RUN steps if imgbuild is killed: %w", err)
	}
	return e.Executor.Run(ctx, id, rootfs, mounts, process, started)
}

// newWatchedExecutor wraps the runc executor whose state is in workerRoot.
func newWatchedExecutor(exe executor.Executor, workerRoot, runc string) *watchedExecutor {
	return &watchedExecutor{Executor: exe, dog: sandbox.NewWatchdog(filepath.Join(workerRoot, "executor"), runc)}
}
