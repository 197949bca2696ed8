//go:build linux

package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// recoverState makes a state dir usable after a process using it was killed
// (kill -9, OOM, a lost node) and after disk corruption. It runs with the
// state dir's lock held, before BuildKit opens anything, so whatever it finds
// running or mounted under root belongs to a dead process:
//   - RUN containers whose runc parent died (runc's parent-death signal kills
//     runc but not the container) are killed and deleted with their cgroup,
//     and what runc leaves of a container it was killed while creating (a
//     state dir without state.json, empty cgroups) is removed, as are the
//     containers' bundle dirs;
//   - mounts under root (container rootfs, snapshot mounts) are detached;
//   - corrupt bbolt databases are set aside (see [statedir.Dir.RecoverDatabases]),
//     unless the last owner closed them cleanly in this boot (see
//     [statedir.Dir.MarkClean]).
//
// Half-written snapshots and content need nothing here: the snapshotter and
// the content store only commit them by an atomic rename at the end, and
// BuildKit drops uncommitted ones when it starts.
func recoverState(ctx context.Context, o *options) error {
	warn := func(msg string) { o.log.Warn(msg) }
	clean := o.dir.TakeClean()
	bundles := staleBundles(o.dir)
	if len(bundles) > 0 {
		// A RUN container has a bundle dir under root from before runc
		// starts it until BuildKit removes the dir after it ends, so
		// without one there is nothing to ask runc about.
		killStaleContainers(ctx, o.runc, o.root, warn)
	}
	for _, b := range bundles {
		sandbox.RemoveHalfCreated(ctx, o.runc, filepath.Base(b))
	}
	sandbox.RemoveOrphanCgroups()
	if err := o.dir.UnmountStale(warn); err != nil {
		return err
	}
	for _, b := range bundles {
		// Only once nothing is mounted in it: a rootfs still mounted
		// there would be the snapshot's own files.
		if m, err := statedir.MountsUnder(b); err == nil && len(m) == 0 {
			_ = os.RemoveAll(b)
		}
	}
	// What a killed process had mounted in its temp dir was unmounted
	// above; the dirs go now, unless a mount survived.
	tmp := o.dir.Temp()
	if m, err := statedir.MountsUnder(tmp); err == nil && len(m) == 0 {
		_ = os.RemoveAll(tmp)
	}
	if clean {
		// The last owner closed every database in this boot and none
		// changed since: their consistency check, which reads every page,
		// has nothing to find.
		return nil
	}
	return o.dir.RecoverDatabases(warn)
}

// useTempDir points the process's temp dir, where BuildKit and containerd
// mount snapshots for a moment (to read a Dockerfile, to diff layers), into
// the state dir: a process killed meanwhile leaves those mounts where
// recoverState finds them, instead of on the host's /tmp for good.
func useTempDir(sd statedir.Dir) error {
	dir := sd.Temp()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := mount.SetTempMountLocation(dir); err != nil {
		return fmt.Errorf("setting the temp mount dir: %w", err)
	}
	return os.Setenv("TMPDIR", dir)
}

// staleBundles lists the OCI bundle dirs of RUN containers (one per BuildKit
// exec ID) that a killed process left in the state dir; BuildKit removes each
// when its container ends.
func staleBundles(sd statedir.Dir) []string {
	var out []string
	var dirs []string
	for _, w := range sd.Workers() {
		d, _ := filepath.Glob(filepath.Join(w.Executor(), "*"))
		dirs = append(dirs, d...)
	}
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && !strings.Contains(d, ".corrupt-") {
			out = append(out, d)
		}
	}
	return out
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
