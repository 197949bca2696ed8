// Package hack holds the tests of the Makefile's install and release
// targets; the scripts themselves are shell.
package hack

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

func makeTarget(t *testing.T, args ...string) {
	t.Helper()
	_, err := exec.LookPath("make")
	testutil.Require(t, err == nil, "make is not installed")
	cmd := exec.Command("make", args...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestMakeInstall: make install puts imgbuild and its runc side by side
// under PREFIX/lib/imgbuild and links PREFIX/bin/imgbuild to it, and the
// installed imgbuild finds that runc.
func TestMakeInstall(t *testing.T) {
	testutil.RequireRoot(t)
	dest := t.TempDir()
	makeTarget(t, "install", "DESTDIR="+dest, "PREFIX=/usr")
	link, err := os.Readlink(filepath.Join(dest, "usr/bin/imgbuild"))
	if err != nil || link != "../lib/imgbuild/imgbuild" {
		t.Fatalf("usr/bin/imgbuild links to %q (%v)", link, err)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/bin/imgbuild"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("imgbuild version: %v\n%s", err, out)
	}
	if want := "runc: " + filepath.Join(dest, "usr/lib/imgbuild/runc") + " ("; !strings.Contains(string(out), want) {
		t.Errorf("imgbuild version does not use the runc installed beside it:\n%s", out)
	}
}

// TestMakeDist: the release archive holds imgbuild, runc and the README,
// and SHA256SUMS has its checksum.
func TestMakeDist(t *testing.T) {
	testutil.RequireRoot(t)
	dist := t.TempDir()
	makeTarget(t, "dist", "DIST="+dist)
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(sums))
	if len(f) != 2 || !strings.HasPrefix(f[1], "imgbuild-") || !strings.HasSuffix(f[1], ".tar.gz") {
		t.Fatalf("SHA256SUMS = %q", sums)
	}
	b, err := os.ReadFile(filepath.Join(dist, f[1]))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f[0] {
		t.Errorf("SHA256SUMS says %s, the archive is %x", f[0], sum)
	}
	out, err := exec.Command("tar", "-tzf", filepath.Join(dist, f[1])).CombinedOutput()
	if err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	for _, want := range []string{"imgbuild/imgbuild", "imgbuild/runc", "imgbuild/README.md"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("the archive lacks %s:\n%s", want, out)
		}
	}
}
