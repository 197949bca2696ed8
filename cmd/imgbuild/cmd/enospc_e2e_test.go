package cmd

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// tmpfsUsed is the bytes in use on the file system at dir.
func tmpfsUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// TestDiskFullRemovesPartialSnapshot fills a 64 MB state dir from a RUN
// step: the build fails naming the step and the cause, and when it exits
// the step's half-written snapshot is gone, not left for a later run.
func TestDiskFullRemovesPartialSnapshot(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", root).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", root).Run() })

	// The base image and a step of its own, so that what stays is the
	// state dir's ordinary content.
	ok := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo ok > /ok\n"})
	if r := e.build(t, root, ok); r.code != 0 {
		t.Fatalf("build: exit %d", r.code)
	}
	before := tmpfsUsed(t, root)

	full := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN dd if=/dev/zero of=/big bs=1M count=200\n"})
	r := e.build(t, root, full)
	if r.code == 0 {
		t.Fatal("a RUN writing 200 MB to a 64 MB state dir succeeded")
	}
	for _, w := range []string{"RUN dd if=/dev/zero of=/big bs=1M count=200", "no space left on device"} {
		if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(w)) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	if strings.Contains(r.stderr, "garbage collection failed") {
		t.Error("the build's own garbage collection failed on the full disk")
	}
	after := tmpfsUsed(t, root)
	t.Logf("state dir: %d KiB used before the failing step, %d KiB after", before>>10, after>>10)
	if after > before+4<<20 {
		t.Errorf("state dir holds %d KiB after the failed build, %d KiB before it: the partial snapshot is left", after>>10, before>>10)
	}
}
