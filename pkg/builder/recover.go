//go:build linux

package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/imgbuild/imgbuild/pkg/cache"
)

// recoverState makes a state dir usable after a process using it was killed
// (kill -9, OOM, a lost node) and after disk corruption. It runs with the
// state dir's lock held, before BuildKit opens anything, so whatever it finds
// running or mounted under root belongs to a dead process:
//   - RUN containers whose runc parent died (runc's parent-death signal kills
//     runc but not the container) are killed and deleted with their cgroup;
//   - mounts under root (container rootfs, snapshot mounts) are detached;
//   - corrupt bbolt databases are set aside (see [cache.RecoverDatabases]).
//
// Half-written snapshots and content need nothing here: the snapshotter and
// the content store only commit them by an atomic rename at the end, and
// BuildKit drops uncommitted ones when it starts.
func recoverState(ctx context.Context, o *options) error {
	warn := func(msg string) { o.log.Warn(msg) }
	killStaleContainers(ctx, o.runc, o.root, warn)
	if err := cache.UnmountStale(o.root, warn); err != nil {
		return err
	}
	return cache.RecoverDatabases(o.root, warn)
}

// staleContainerTimeout bounds each runc call: recovery must not hang a
// build on a wedged runc.
const staleContainerTimeout = 10 * time.Second

// killStaleContainers kills and deletes the runc containers whose bundle is
// under root. BuildKit runs runc with its default state root, so `runc list`
// also shows other users' containers: only ours are touched.
func killStaleContainers(ctx context.Context, runcPath, root string, warn func(string)) {
	ctx, cancel := context.WithTimeout(ctx, staleContainerTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, runcPath, "list", "--format", "json").Output()
	if err != nil {
		return // no state root yet: nothing ever ran
	}
	var list []struct {
		ID     string `json:"id"`
		Bundle string `json:"bundle"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &list); err != nil {
		return
	}
	prefix := filepath.Clean(root) + "/"
	for _, c := range list {
		if !strings.HasPrefix(c.Bundle, prefix) {
			continue
		}
		_ = exec.CommandContext(ctx, runcPath, "kill", c.ID, "KILL").Run()
		if err := exec.CommandContext(ctx, runcPath, "delete", "--force", c.ID).Run(); err != nil {
			warn("removing container " + c.ID + " left by an interrupted build: " + err.Error())
			continue
		}
		warn("removed container " + c.ID + " (" + c.Status + "), left by an interrupted build")
	}
}
