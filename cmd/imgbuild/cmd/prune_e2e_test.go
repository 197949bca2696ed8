package cmd

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// du runs `imgbuild du --format json` on root, with args.
func (e e2e) du(t *testing.T, root string, args ...string) duReport {
	t.Helper()
	r := imgbuild(t, "", append([]string{"du", "--root", root, "--runc", e.runc, "--format", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("du failed: %s", r.stderr)
	}
	var rep duReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("du output %q: %v", r.stdout, err)
	}
	return rep
}

// buildBig builds n images, each with a distinct 3 MB random layer, on root.
func (e e2e) buildBig(t *testing.T, root string, n int, args ...string) {
	t.Helper()
	for i := range n {
		dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf(
			"ARG BASE\nFROM ${BASE}\nRUN echo %d-%s > /id && head -c 3000000 /dev/urandom > /big\n", i, t.Name())})
		if r := e.build(t, root, append(args, dir)...); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
}

const mb = 1 << 20

// TestCachePruneToBound checks that du reports what builds cached and that
// prune --keep-storage, --filter until= and --all bring it down as asked.
func TestCachePruneToBound(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	e.buildBig(t, root, 3, "--gc-keep-storage", "off")
	before := e.du(t, root)
	if before.Total < 9*mb || before.ImageStore < 9*mb {
		t.Fatalf("du after three 3 MB builds: cache %d, image store %d; want each >= 9 MB", before.Total, before.ImageStore)
	}
	var runs int
	for _, r := range before.Records {
		if strings.Contains(r.Description, "head -c 3000000") {
			runs++
			if r.LastUsedAt.IsZero() || r.Size < 3000000 {
				t.Errorf("RUN record %+v lacks last use or size", r)
			}
		}
	}
	if runs != 3 {
		t.Errorf("du lists %d RUN records, want 3: %+v", runs, before.Records)
	}

	// Everything was used just now, so until=1h removes nothing.
	if r := imgbuild(t, "", "prune", "--root", root, "--runc", e.runc, "--filter", "until=1h"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := e.du(t, root); got.Total != before.Total {
		t.Errorf("prune --filter until=1h changed the cache from %d to %d", before.Total, got.Total)
	}

	r := imgbuild(t, "", "prune", "--root", root, "--runc", e.runc, "--keep-storage", "4MB")
	if r.code != 0 || !strings.Contains(r.stdout, "Removed") {
		t.Fatalf("prune --keep-storage: exit %d, stdout %q", r.code, r.stdout)
	}
	if got := e.du(t, root); got.Total > 4*mb {
		t.Errorf("after prune --keep-storage 4MB the cache is %d bytes", got.Total)
	}

	if r := imgbuild(t, "", "prune", "--root", root, "--runc", e.runc, "--all"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := e.du(t, root); got.Total != 0 || got.ImageStore != 0 {
		t.Errorf("after prune --all: cache %d bytes, image store %d bytes; want both 0", got.Total, got.ImageStore)
	}
}

// TestCacheGCKeepStorage checks the automatic GC at the end of a build: the
// cache stays under --gc-keep-storage and the image store keeps the result.
func TestCacheGCKeepStorage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	root := t.TempDir()
	e.buildBig(t, root, 3, "--gc-keep-storage", "5MB")
	got := e.du(t, root)
	if got.Total > 5*mb {
		t.Errorf("cache is %d bytes after builds with --gc-keep-storage 5MB", got.Total)
	}
	if got.ImageStore < 3000000 {
		t.Errorf("image store is %d bytes: the last result is gone", got.ImageStore)
	}
}

func TestCachePruneFlagErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, args := range [][]string{
		{"prune", "--keep-storage", "lots"},
		{"prune", "--filter", "until=soon"},
		{"du", "--format", "xml"},
	} {
		r := imgbuild(t, "", append(args, "--root", t.TempDir(), "--runc", e.runc)...)
		if r.code == 0 || !strings.Contains(r.stderr, args[1]) {
			t.Errorf("%v: exit %d, stderr %q; want a failure naming the flag", args, r.code, r.stderr)
		}
	}
	if r := e.build(t, t.TempDir(), "--gc-keep-storage", "big", "."); r.code == 0 || !strings.Contains(r.stderr, "--gc-keep-storage") {
		t.Errorf("--gc-keep-storage big: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestStateDirSnapshotterMismatch: a state dir made with the native
// snapshotter is refused by every command asked to open it with overlayfs,
// with an error naming the state dir, both snapshotters and the fix, and its
// build cache is still all there afterwards.
func TestStateDirSnapshotterMismatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	root := t.TempDir()
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo native > /n.txt\n"})
	if r := e.build(t, root, "--snapshotter", "native", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	before := e.du(t, root, "--snapshotter", "native")
	if len(before.Records) == 0 {
		t.Fatal("du lists no build cache records after a build")
	}
	for _, args := range [][]string{
		{"du", "--root", root, "--runc", e.runc, "--snapshotter", "overlayfs"},
		{"prune", "--all", "--root", root, "--runc", e.runc, "--snapshotter", "overlayfs"},
		{"build", "--root", root, "--runc", e.runc, "--build-arg", "BASE=" + e.base, "--snapshotter", "overlayfs", dir},
	} {
		r := imgbuild(t, "", args...)
		for _, w := range []string{"state dir " + root + " was made with the native snapshotter", "would use overlayfs (asked for)", "--snapshotter native", "--root"} {
			if r.code == 0 || !strings.Contains(r.stderr, w) {
				t.Errorf("imgbuild %s: exit %d, stderr %q; want a failure saying %q", args[0], r.code, r.stderr, w)
				break
			}
		}
	}
	after := e.du(t, root, "--snapshotter", "native")
	if len(after.Records) != len(before.Records) || after.Total != before.Total {
		t.Errorf("after the refusals du lists %d records (%d bytes), want %d (%d bytes)", len(after.Records), after.Total, len(before.Records), before.Total)
	}
	r := e.build(t, root, "--snapshotter", "native", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if !stepCached(t, r.stderr, "RUN echo native") {
		t.Errorf("the RUN step was not cached after the refusals:\n%s", r.stderr)
	}
}
