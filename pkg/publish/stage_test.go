package publish

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStage commits a staged tarball and a staged directory merged into an
// existing one, and discards a third: nothing but the committed outputs
// is left.
func TestStage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tarball, err := Stage(Output{Type: OCI, Dest: filepath.Join(dir, "img.tar")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tarball.File(), "tar"); err != nil {
		t.Fatal(err)
	}
	tarball.File().Close()
	if err := tarball.Commit(); err != nil {
		t.Fatal(err)
	}

	rootfs := filepath.Join(dir, "rootfs")
	for p, c := range map[string]string{"keep": "kept", "etc/mine": "mine", "out": "old"} {
		os.MkdirAll(filepath.Dir(filepath.Join(rootfs, p)), 0o755)
		os.WriteFile(filepath.Join(rootfs, p), []byte(c), 0o644)
	}
	local, err := Stage(Output{Type: Local, Dest: rootfs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(local.Dir(), "etc"), 0o755)
	os.WriteFile(filepath.Join(local.Dir(), "etc", "passwd"), []byte("root"), 0o644)
	os.WriteFile(filepath.Join(local.Dir(), "out"), []byte("new"), 0o644)
	if err := local.Commit(); err != nil {
		t.Fatal(err)
	}

	failed, err := Stage(Output{Type: Docker, Dest: filepath.Join(dir, "docker.tar")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(failed.File(), "half")
	failed.Discard()

	unwritten, err := Stage(Output{Type: Tar, Dest: filepath.Join(dir, "rootfs.tar")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := unwritten.Commit(); err == nil {
		t.Error("committed an output the build never wrote")
	}

	for p, want := range map[string]string{"img.tar": "tar", "rootfs/keep": "kept", "rootfs/etc/mine": "mine", "rootfs/etc/passwd": "root", "rootfs/out": "new"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "img.tar")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("img.tar mode %v, %v; want 0644", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want only img.tar and rootfs", names)
	}
}

// TestStageMissingDir fails at once, naming the path.
func TestStageMissingDir(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(t.TempDir(), "nope", "img.tar")
	if _, err := Stage(Output{Type: OCI, Dest: dest}, nil); err == nil || !strings.Contains(err.Error(), dest) {
		t.Errorf("Stage error %v, want one naming %s", err, dest)
	}
}
