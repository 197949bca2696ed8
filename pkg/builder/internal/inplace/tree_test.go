//go:build linux

package inplace

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// ts is a time with nanoseconds, so that a sync that drops them shows.
func ts(sec, nsec int64) unix.Timespec { return unix.Timespec{Sec: sec, Nsec: nsec} }

// fixture builds trees for the tests; every call fails the test on error.
type fixture struct {
	t    *testing.T
	root string
}

func (f fixture) p(rel string) string { return filepath.Join(f.root, rel) }

func (f fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// file writes a regular file with its owner, mode and mtime, in that order
// (chown clears set-ID bits).
func (f fixture) file(rel string, content []byte, mode uint32, uid, gid int, mtime unix.Timespec) {
	f.t.Helper()
	p := f.p(rel)
	f.must(os.MkdirAll(filepath.Dir(p), 0o755))
	f.must(os.WriteFile(p, content, 0o600))
	f.must(unix.Lchown(p, uid, gid))
	f.must(unix.Chmod(p, mode))
	f.times(rel, mtime)
}

func (f fixture) dir(rel string, mode uint32, uid, gid int) {
	f.t.Helper()
	p := f.p(rel)
	f.must(os.MkdirAll(p, 0o755))
	f.must(unix.Lchown(p, uid, gid))
	f.must(unix.Chmod(p, mode))
}

func (f fixture) symlink(rel, target string, uid, gid int, mtime unix.Timespec) {
	f.t.Helper()
	p := f.p(rel)
	f.must(os.MkdirAll(filepath.Dir(p), 0o755))
	f.must(os.Symlink(target, p))
	f.must(unix.Lchown(p, uid, gid))
	f.times(rel, mtime)
}

func (f fixture) link(oldRel, newRel string) {
	f.t.Helper()
	f.must(os.MkdirAll(filepath.Dir(f.p(newRel)), 0o755))
	f.must(os.Link(f.p(oldRel), f.p(newRel)))
}

func (f fixture) times(rel string, mtime unix.Timespec) {
	f.t.Helper()
	atime := ts(1500000000, 1)
	f.must(unix.UtimesNanoAt(unix.AT_FDCWD, f.p(rel), []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW))
}

// xattrs reports which extended attributes the fixture carries: a
// filesystem may refuse user.* or security.capability.
type xattrs struct{ user, capability bool }

// vfsCapV2 is a security.capability blob: CAP_NET_BIND_SERVICE permitted
// and effective, as setcap cap_net_bind_service+ep writes it.
func vfsCapV2() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_BIND_SERVICE)
	return b
}

// richTree writes every kind of entry the syncer must carry into f.root.
func richTree(f fixture) xattrs {
	f.t.Helper()
	f.dir("bin", 0o755, 0, 0)
	f.file("bin/su", []byte("#!/bin/sh\necho su\n"), 0o4755, 0, 0, ts(1600000000, 123456789))
	f.file("etc/shadow", []byte("root:*:1::::::\n"), 0o600, 0, 5, ts(1600000001, 987654321))
	f.file("home/user/notes", []byte("user's notes\n"), 0o644, 1000, 1000, ts(1600000002, 1))
	f.file("empty", nil, 0o644, 0, 0, ts(1600000003, 999999999))
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	f.file("var/big.bin", big, 0o640, 0, 0, ts(1600000004, 500))
	// Three names, one inode, across two directories.
	f.file("usr/bin/tool", []byte("tool\n"), 0o755, 0, 0, ts(1600000005, 42))
	f.link("usr/bin/tool", "usr/bin/tool-alias")
	f.link("usr/bin/tool", "usr/lib/tool.link")
	f.symlink("usr/bin/abs", "/usr/bin/tool", 1000, 1000, ts(1600000006, 7))
	f.symlink("usr/bin/rel", "tool", 0, 5, ts(1600000007, 8))
	f.symlink("usr/bin/dangling", "../nowhere/at/all", 0, 0, ts(1600000008, 9))
	f.must(unix.Mkfifo(f.p("var/fifo"), 0o620))
	f.must(unix.Lchown(f.p("var/fifo"), 1000, 5))
	f.times("var/fifo", ts(1600000009, 10))
	f.dir("dev", 0o755, 0, 0)
	f.must(unix.Mknod(f.p("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	f.must(unix.Chmod(f.p("dev/null"), 0o666))
	f.times("dev/null", ts(1600000010, 11))

	var x xattrs
	x.user = unix.Lsetxattr(f.p("home/user/notes"), "user.test", []byte("hello"), 0) == nil
	if !x.user {
		f.t.Log("the filesystem refuses user.* xattrs: not checking them")
	}
	capFile := "usr/bin/ping"
	f.file(capFile, []byte("ping\n"), 0o755, 0, 0, ts(1600000011, 12))
	if err := unix.Lsetxattr(f.p(capFile), "security.capability", vfsCapV2(), 0); err != nil {
		f.t.Logf("the filesystem refuses security.capability (%v): not checking it", err)
	} else {
		x.capability = true
		f.times(capFile, ts(1600000011, 12)) // setxattr leaves mtime, but be sure
	}

	f.dir("secret", 0o700, 1000, 1000)
	f.file("secret/key", []byte("k"), 0o400, 1000, 1000, ts(1600000012, 13))
	f.dir("tmp", 0o1777, 0, 0)
	f.dir("a/b/c", 0o750, 0, 5)
	f.file("a/b/c/leaf", []byte("leaf"), 0o644, 0, 0, ts(1600000013, 14))
	// Directory times last, deepest first: adding entries changes them.
	for i, d := range []string{"a/b/c", "a/b", "a", "tmp", "secret", "dev", "usr/lib", "usr/bin", "usr", "var", "home/user", "home", "etc", "bin"} {
		f.times(d, ts(1610000000+int64(i), int64(i)*1000+3))
	}
	return x
}

// entry is what treeEqual compares of one path.
type entry struct {
	st      unix.Stat_t
	target  string
	content []byte
	xattrs  map[string][]byte
}

// scan reads every path under root (bar protected ones and root itself).
func scan(t *testing.T, root string, prot *protected) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	var walk func(rel string)
	walk = func(rel string) {
		names, err := readNames(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			child := join(rel, n)
			if prot.skip(child) {
				continue
			}
			p := filepath.Join(root, child)
			var e entry
			if err := unix.Lstat(p, &e.st); err != nil {
				t.Fatal(err)
			}
			e.xattrs = listXattrs(p)
			switch e.st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if e.content, err = os.ReadFile(p); err != nil {
					t.Fatal(err)
				}
			case unix.S_IFLNK:
				if e.target, err = os.Readlink(p); err != nil {
					t.Fatal(err)
				}
			case unix.S_IFDIR:
				walk(child)
			}
			out[child] = e
		}
	}
	walk("")
	return out
}

// treeEqual fails t unless b holds what a does: the same paths, types,
// modes (set-ID bits too), owners, sizes, contents, link targets, mtimes to
// the nanosecond (symlinks' too), device numbers, xattrs, and the same hard
// links (names sharing an inode in a share one in b, and only those).
func treeEqual(t *testing.T, a, b string, prot *protected) {
	t.Helper()
	ea, eb := scan(t, a, prot), scan(t, b, prot)
	for rel := range ea {
		if _, ok := eb[rel]; !ok {
			t.Errorf("%s: in %s, missing from %s", rel, a, b)
		}
	}
	for rel := range eb {
		if _, ok := ea[rel]; !ok {
			t.Errorf("%s: in %s, not in %s", rel, b, a)
		}
	}
	inoA, inoB := map[uint64]string{}, map[uint64]string{}
	for rel, x := range ea {
		y, ok := eb[rel]
		if !ok {
			continue
		}
		s, d := x.st, y.st
		if s.Mode != d.Mode {
			t.Errorf("%s: mode %o, want %o", rel, d.Mode, s.Mode)
		}
		if s.Uid != d.Uid || s.Gid != d.Gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, d.Uid, d.Gid, s.Uid, s.Gid)
		}
		if s.Mtim != d.Mtim {
			t.Errorf("%s: mtime %d.%09d, want %d.%09d", rel, d.Mtim.Sec, d.Mtim.Nsec, s.Mtim.Sec, s.Mtim.Nsec)
		}
		if !maps2Equal(x.xattrs, y.xattrs) {
			t.Errorf("%s: xattrs %q, want %q", rel, y.xattrs, x.xattrs)
		}
		switch s.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if s.Size != d.Size || !bytes.Equal(x.content, y.content) {
				t.Errorf("%s: content differs (size %d, want %d)", rel, d.Size, s.Size)
			}
			if s.Nlink != d.Nlink {
				t.Errorf("%s: %d links, want %d", rel, d.Nlink, s.Nlink)
			}
			// Hard links: the first name seen for an inode in a must map to
			// the same inode in b, and b's inodes to a's, both ways.
			if first, ok := inoA[s.Ino]; ok {
				if eb[first].st.Ino != d.Ino {
					t.Errorf("%s: not a hard link of %s, as it is in %s", rel, first, a)
				}
			} else {
				inoA[s.Ino] = rel
			}
			if first, ok := inoB[d.Ino]; ok {
				if ea[first].st.Ino != s.Ino {
					t.Errorf("%s: a hard link of %s in %s, not in %s", rel, first, b, a)
				}
			} else {
				inoB[d.Ino] = rel
			}
		case unix.S_IFLNK:
			if x.target != y.target {
				t.Errorf("%s: link to %q, want %q", rel, y.target, x.target)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if s.Rdev != d.Rdev {
				t.Errorf("%s: device %d:%d, want %d:%d", rel, unix.Major(d.Rdev), unix.Minor(d.Rdev), unix.Major(s.Rdev), unix.Minor(s.Rdev))
			}
		}
	}
}

func maps2Equal(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func syncTrees(t *testing.T, src, dst string, prot *protected) *syncer {
	t.Helper()
	s := &syncer{src: src, dst: dst, prot: prot}
	if err := s.run(); err != nil {
		t.Fatalf("sync %s -> %s: %v", src, dst, err)
	}
	return s
}

// checkRich checks what treeEqual cannot see by itself: that the fixture
// (and so dst) really has the set-ID bit, the device, the links and the
// xattrs the test is about.
func checkRich(t *testing.T, dst string, x xattrs) {
	t.Helper()
	if st := lstat(t, filepath.Join(dst, "bin/su")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/su: mode %o, want 4755", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(dst, "dev/null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: mode %o rdev %d:%d, want a char device 1:3", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st := lstat(t, filepath.Join(dst, "var/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("var/fifo: mode %o, want a fifo", st.Mode)
	}
	tool := lstat(t, filepath.Join(dst, "usr/bin/tool"))
	for _, n := range []string{"usr/bin/tool-alias", "usr/lib/tool.link"} {
		if st := lstat(t, filepath.Join(dst, n)); st.Ino != tool.Ino || st.Nlink != 3 {
			t.Errorf("%s: inode %d (%d links), want usr/bin/tool's %d (3 links)", n, st.Ino, st.Nlink, tool.Ino)
		}
	}
	if st := lstat(t, filepath.Join(dst, "usr/bin/abs")); st.Uid != 1000 || st.Mtim != ts(1600000006, 7) {
		t.Errorf("usr/bin/abs: owner %d, mtime %v: the symlink's own metadata was not kept", st.Uid, st.Mtim)
	}
	if x.user {
		if v := listXattrs(filepath.Join(dst, "home/user/notes"))["user.test"]; string(v) != "hello" {
			t.Errorf("home/user/notes: user.test = %q, want hello", v)
		}
	}
	if x.capability {
		if v := listXattrs(filepath.Join(dst, "usr/bin/ping"))["security.capability"]; !bytes.Equal(v, vfsCapV2()) {
			t.Errorf("usr/bin/ping: security.capability = %x, want %x", v, vfsCapV2())
		}
	}
}

func TestSyncIntoEmpty(t *testing.T) {
	testutil.RequireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	x := richTree(fixture{t, src})
	none := newProtected(nil)
	syncTrees(t, src, dst, none)
	treeEqual(t, src, dst, none)
	checkRich(t, dst, x)

	// Syncing again finds everything in place and writes nothing.
	if s := syncTrees(t, src, dst, none); s.written != 0 {
		t.Errorf("a second sync wrote %d entries, want 0", s.written)
	}
}

func TestSyncOverStale(t *testing.T) {
	testutil.RequireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	x := richTree(fixture{t, src})
	fs := fixture{t, src}
	fs.dir("was-file", 0o755, 0, 0)
	fs.file("was-file/inside", []byte("inside"), 0o644, 0, 0, ts(1600000020, 1))
	fs.file("was-dir", []byte("now a file"), 0o644, 0, 0, ts(1600000021, 2))
	fs.file("same-stat", []byte("new content"), 0o644, 0, 0, ts(1600000022, 3))
	fs.file("pair/one", []byte("same"), 0o644, 0, 0, ts(1600000023, 4))
	fs.file("pair/two", []byte("same"), 0o644, 0, 0, ts(1600000023, 4))
	fs.file("kept", []byte("kept as is"), 0o644, 0, 0, ts(1600000024, 5))
	fs.file("lnk/x", []byte("linked"), 0o644, 0, 0, ts(1600000026, 7))
	fs.link("lnk/x", "lnk/y")
	fs.times("pair", ts(1600000025, 6))

	fd := fixture{t, dst}
	fd.file("stale", []byte("old"), 0o644, 0, 0, ts(1, 0))
	fd.file("a/b/stale", []byte("old"), 0o644, 0, 0, ts(1, 0))
	fd.dir("stale-dir/sub", 0o755, 0, 0)
	fd.file("was-file", []byte("a file"), 0o644, 0, 0, ts(1, 0))
	fd.file("was-dir/inside", []byte("in a dir"), 0o644, 0, 0, ts(1, 0))
	// Same size, mode, owner and mtime; only the bytes differ.
	fd.file("same-stat", []byte("old content"), 0o644, 0, 0, ts(1600000022, 3))
	// Linked here, separate in the source: same content, mode and mtime.
	fd.file("pair/one", []byte("same"), 0o644, 0, 0, ts(1600000023, 4))
	fd.link("pair/one", "pair/two")
	fd.file("kept", []byte("kept as is"), 0o644, 0, 0, ts(1600000024, 5))
	// Two links each, as in the source, but not to each other: the other
	// names, in a directory synced later, go.
	fd.file("lnk/x", []byte("linked"), 0o644, 0, 0, ts(1600000026, 7))
	fd.link("lnk/x", "var/q")
	fd.file("lnk/y", []byte("linked"), 0o644, 0, 0, ts(1600000026, 7))
	fd.link("lnk/y", "var/r")
	fd.file("bin/su", []byte("#!/bin/sh\necho su\n"), 0o755, 0, 0, ts(1600000000, 123456789)) // lost its setuid bit
	// Same size (the target's length), owner and mtime; another target.
	fd.symlink("usr/bin/rel", "fool", 0, 5, ts(1600000007, 8))
	// Same mode, owner and mtime; another device (/dev/zero).
	fd.dir("dev", 0o755, 0, 0)
	fd.must(unix.Mknod(fd.p("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	fd.must(unix.Chmod(fd.p("dev/null"), 0o666))
	fd.times("dev/null", ts(1600000010, 11))
	fd.file("usr/bin/tool", []byte("tool\n"), 0o755, 0, 0, ts(1600000005, 42)) // not linked
	// All the same but the xattrs: a stale value and one the source lacks.
	fd.file("home/user/notes", []byte("user's notes\n"), 0o644, 1000, 1000, ts(1600000002, 1))
	if x.user {
		fd.must(unix.Lsetxattr(fd.p("home/user/notes"), "user.test", []byte("stale"), 0))
		fd.must(unix.Lsetxattr(fd.p("home/user/notes"), "user.extra", []byte("gone"), 0))
		// A directory is synced in place: its stale xattrs must go.
		fd.must(unix.Lsetxattr(fd.p("a/b"), "user.stale", []byte("gone"), 0))
	}
	kept := lstat(t, fd.p("kept")).Ino

	syncTrees(t, src, dst, newProtected(nil))
	treeEqual(t, src, dst, newProtected(nil))
	checkRich(t, dst, x)
	if got, _ := os.ReadFile(fd.p("same-stat")); string(got) != "new content" {
		t.Errorf("same-stat = %q: a file with the same size and mtime was not compared by content", got)
	}
	if a, b := lstat(t, fd.p("pair/one")), lstat(t, fd.p("pair/two")); a.Ino == b.Ino || a.Nlink != 1 {
		t.Errorf("pair/one and pair/two: inodes %d, %d (%d links), want two separate files", a.Ino, b.Ino, a.Nlink)
	}
	if got := lstat(t, fd.p("kept")).Ino; got != kept {
		t.Errorf("kept: rewritten (inode %d, was %d) though it matched", got, kept)
	}
}

// TestSyncProtected checks the protected paths and their ancestors, in both
// directions of the executor's round trip.
func TestSyncProtected(t *testing.T) {
	testutil.RequireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	prot := newProtected([]string{"proc", "mnt/data", "etc/hosts", "only/deep/mount", "opt/app/mount", "run/secret", "srv/mnt"})
	fs, fd := fixture{t, src}, fixture{t, dst}

	fd.file("proc/self", []byte("dst proc"), 0o444, 0, 0, ts(1, 0))
	fd.file("mnt/data/file", []byte("mounted"), 0o644, 0, 0, ts(1, 0))
	fd.file("etc/hosts", []byte("dst hosts"), 0o644, 0, 0, ts(1, 0))
	fd.file("etc/stale", []byte("stale"), 0o644, 0, 0, ts(1, 0))
	fd.file("run/secret", []byte("token"), 0o600, 0, 0, ts(1, 0))
	fd.file("run/stale", []byte("from another snapshot"), 0o644, 0, 0, ts(1, 0))
	fd.dir("srv/mnt", 0o755, 0, 0)
	fd.file("srv/mnt/x", []byte("mounted"), 0o644, 0, 0, ts(1, 0))

	fs.file("proc/self", []byte("src proc"), 0o444, 0, 0, ts(2, 0))
	fs.file("mnt/data/other", []byte("from the snapshot"), 0o644, 0, 0, ts(2, 0))
	fs.file("mnt/readme", []byte("beside the mount"), 0o644, 0, 0, ts(2, 0))
	fs.file("etc/hosts", []byte("src hosts"), 0o644, 0, 0, ts(2, 0))
	fs.file("etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644, 0, 0, ts(2, 0))
	// The source has no run, a file where srv must stay a directory, only
	// a protected path under only/deep, and real content beside opt/app/mount.
	fs.symlink("srv", "/elsewhere", 0, 0, ts(2, 0))
	fs.file("only/deep/mount/x", []byte("protected"), 0o644, 0, 0, ts(2, 0))
	fs.file("opt/app/mount/x", []byte("protected"), 0o644, 0, 0, ts(2, 0))
	fs.file("opt/app/config", []byte("config"), 0o644, 0, 0, ts(2, 0))
	fs.dir("opt/app", 0o711, 1000, 1000)
	fs.times("opt/app", ts(3, 3))

	type fileState struct {
		ino     uint64
		content string
	}
	state := func(rel string) fileState {
		b, err := os.ReadFile(fd.p(rel))
		if err != nil {
			t.Fatal(err)
		}
		return fileState{lstat(t, fd.p(rel)).Ino, string(b)}
	}
	untouched := []string{"proc/self", "mnt/data/file", "etc/hosts", "run/secret", "srv/mnt/x"}
	before := map[string]fileState{}
	for _, rel := range untouched {
		before[rel] = state(rel)
	}

	syncTrees(t, src, dst, prot)

	for _, rel := range untouched {
		if got := state(rel); got != before[rel] {
			t.Errorf("%s: protected, but now %+v (was %+v)", rel, got, before[rel])
		}
	}
	exists := func(rel string) bool {
		_, err := os.Lstat(fd.p(rel))
		return err == nil
	}
	for _, rel := range []string{"mnt/data/other", "only", "opt/app/mount", "etc/stale", "run/stale"} {
		if exists(rel) {
			t.Errorf("%s: in dst after the sync, want it absent", rel)
		}
	}
	for _, rel := range []string{"mnt/readme", "etc/passwd", "opt/app/config", "run", "srv/mnt"} {
		if !exists(rel) {
			t.Errorf("%s: missing from dst after the sync", rel)
		}
	}
	if st := lstat(t, fd.p("srv")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("srv: mode %o, want the directory holding srv/mnt kept", st.Mode)
	}
	if st := lstat(t, fd.p("opt/app")); st.Mode&0o7777 != 0o711 || st.Uid != 1000 || st.Mtim != ts(3, 3) {
		t.Errorf("opt/app: mode %o owner %d mtime %v, want the source's 711, 1000, 3.000000003", st.Mode&0o7777, st.Uid, st.Mtim)
	}

	// Back the other way, as the executor saves a step: the destination's
	// protected content does not reach the source, and a directory that
	// holds only protected paths is not made there.
	back := t.TempDir()
	syncTrees(t, dst, back, prot)
	for _, rel := range []string{"proc", "mnt/data", "etc/hosts", "run", "srv"} {
		if _, err := os.Lstat(filepath.Join(back, rel)); err == nil {
			t.Errorf("%s: copied back though it holds only protected paths", rel)
		}
	}
	if b, err := os.ReadFile(filepath.Join(back, "etc/passwd")); err != nil || !strings.HasPrefix(string(b), "root:") {
		t.Errorf("etc/passwd not copied back: %q, %v", b, err)
	}
}

// TestSyncScratchStage is a stage whose snapshot lacks a directory the
// container needs (FROM scratch has no /etc): what an earlier step left in
// it must not stay for this step, nor end up in its snapshot.
func TestSyncScratchStage(t *testing.T) {
	testutil.RequireRoot(t)
	snap, root := t.TempDir(), t.TempDir()
	prot := newProtected([]string{"etc/hosts", "etc/resolv.conf"})
	fs, fr := fixture{t, snap}, fixture{t, root}
	fs.file("bin/busybox", []byte("busybox"), 0o755, 0, 0, ts(2, 0))
	fr.file("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644, 0, 0, ts(1, 0))
	fr.file("etc/resolv.conf", []byte("nameserver 10.0.0.10\n"), 0o644, 0, 0, ts(1, 0))
	fr.file("etc/passwd", []byte("from the previous stage\n"), 0o644, 0, 0, ts(1, 0))
	fr.file("etc/ssl/cert.pem", []byte("from the previous stage\n"), 0o644, 0, 0, ts(1, 0))

	syncTrees(t, snap, root, prot)
	for _, rel := range []string{"etc/passwd", "etc/ssl"} {
		if _, err := os.Lstat(fr.p(rel)); err == nil {
			t.Errorf("%s: left in the root from an earlier snapshot", rel)
		}
	}
	if b, _ := os.ReadFile(fr.p("etc/hosts")); !strings.Contains(string(b), "localhost") {
		t.Errorf("etc/hosts: %q, want the container's", b)
	}
	rec, err := recordTree(root, prot)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncer{src: root, dst: snap, prot: prot, unchanged: unchangedSince(rec)}
	if err := out.run(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(snap, "etc")); err == nil {
		t.Errorf("etc: made in a snapshot that had none, for the container's own files")
	}
}

// TestRoundTrip is what the executor does around a step: snapshot to
// root, stamps, the step's changes, root back to the snapshot.
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	snap, root := t.TempDir(), t.TempDir()
	richTree(fixture{t, snap})
	fs, fr := fixture{t, snap}, fixture{t, root}
	fs.file("etc/motd", []byte("version 1\n"), 0o644, 0, 0, ts(1600000030, 1))
	fs.file("etc/chmod-me", []byte("x"), 0o644, 0, 0, ts(1600000031, 2))
	fs.file("etc/delete-me", []byte("x"), 0o644, 0, 0, ts(1600000032, 3))
	fs.file("etc/rename-me", []byte("renamed"), 0o644, 0, 0, ts(1600000033, 4))
	fs.file("data/dir-to-link/f", []byte("f"), 0o644, 0, 0, ts(1600000034, 5))
	fs.file("data/link-me", []byte("linked"), 0o644, 0, 0, ts(1600000035, 6))
	fs.times("etc", ts(1610000100, 1))
	fs.times("data", ts(1610000101, 2))
	prot := newProtected([]string{"proc", "mnt/data"})
	fr.file("proc/cpuinfo", []byte("cpu"), 0o444, 0, 0, ts(1, 0))
	fr.file("mnt/data/volume", []byte("volume"), 0o644, 0, 0, ts(1, 0))
	fs.file("mnt/readme", []byte("beside the volume"), 0o644, 0, 0, ts(1600000036, 7))

	syncTrees(t, snap, root, prot)
	treeEqual(t, snap, root, prot)
	rec, err := recordTree(root, prot)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["proc/cpuinfo"]; ok {
		t.Errorf("recordTree stamped the protected proc/cpuinfo")
	}
	untouched := []string{"bin/su", "var/big.bin", "usr/bin/tool", "usr/lib/tool.link", "usr/bin/abs", "usr/bin/dangling", "var/fifo", "dev/null", "home/user/notes", "usr/bin/ping", "a/b/c/leaf", "mnt/readme"}
	// A rewrite may get the freed inode number back (ext4 does): inode
	// and ctime together tell.
	stampOf := func(rel string) stamp {
		st := lstat(t, fs.p(rel))
		return stamp{st.Ino, st.Ctim}
	}
	stamps := map[string]stamp{}
	for _, rel := range untouched {
		stamps[rel] = stampOf(rel)
	}
	motdStamp := stampOf("etc/motd")

	// The step. Same size, and the mtime put back: only ctime tells.
	motd := fr.p("etc/motd")
	old := lstat(t, motd)
	if err := os.WriteFile(motd, []byte("version 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fr.must(os.Chtimes(motd, time.Unix(old.Atim.Unix()), time.Unix(old.Mtim.Unix())))
	if st := lstat(t, motd); st.Size != old.Size || st.Mtim != old.Mtim {
		t.Fatalf("etc/motd: size %d mtime %v, the test meant to keep %d, %v", st.Size, st.Mtim, old.Size, old.Mtim)
	}
	fr.must(os.Chmod(fr.p("etc/chmod-me"), 0o600))
	fr.must(os.WriteFile(fr.p("etc/added"), []byte("added"), 0o644))
	fr.must(os.Remove(fr.p("etc/delete-me")))
	fr.must(os.Rename(fr.p("etc/rename-me"), fr.p("etc/renamed")))
	fr.must(os.RemoveAll(fr.p("data/dir-to-link")))
	fr.must(os.Symlink("/etc", fr.p("data/dir-to-link")))
	fr.must(os.Link(fr.p("data/link-me"), fr.p("etc/link-of-link-me")))
	fr.must(os.WriteFile(fr.p("proc/cpuinfo"), []byte("changed, but protected"), 0o444))

	out := &syncer{src: root, dst: snap, prot: prot, unchanged: unchangedSince(rec)}
	if err := out.run(); err != nil {
		t.Fatal(err)
	}
	treeEqual(t, root, snap, prot)
	if b, _ := os.ReadFile(fs.p("etc/motd")); string(b) != "version 2\n" {
		t.Errorf("etc/motd = %q: a write that kept size and mtime was missed", b)
	}
	if stampOf("etc/motd") == motdStamp {
		t.Errorf("etc/motd: the snapshot's file was not rewritten")
	}
	for _, rel := range untouched {
		if got := stampOf(rel); got != stamps[rel] {
			t.Errorf("%s: rewritten in the snapshot (%+v, was %+v) though the step left it alone", rel, got, stamps[rel])
		}
	}
	if _, err := os.Lstat(fs.p("proc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("proc: copied into the snapshot (%v)", err)
	}
	// Only the step's changes are written: motd, chmod-me, added,
	// delete-me, rename-me and renamed, dir-to-link, and link-me with its
	// new link (the link changed the inode's ctime).
	if out.written != 9 {
		t.Errorf("saving the step wrote %d entries, want 9", out.written)
	}
}

func TestUnchangedSince(t *testing.T) {
	rec := record{"a": {ino: 7, ctime: ts(10, 5)}}
	same := unchangedSince(rec)
	for _, tc := range []struct {
		rel  string
		st   unix.Stat_t
		want bool
	}{
		{"a", unix.Stat_t{Ino: 7, Ctim: ts(10, 5)}, true},
		{"a", unix.Stat_t{Ino: 7, Ctim: ts(10, 6)}, false},
		{"a", unix.Stat_t{Ino: 8, Ctim: ts(10, 5)}, false},
		{"b", unix.Stat_t{Ino: 7, Ctim: ts(10, 5)}, false},
	} {
		if got := same(tc.rel, &tc.st, nil); got != tc.want {
			t.Errorf("unchanged(%s, ino %d, ctime %v) = %v, want %v", tc.rel, tc.st.Ino, tc.st.Ctim, got, tc.want)
		}
	}
}

func TestProtectedPaths(t *testing.T) {
	p := newProtected([]string{"/proc/", "mnt/data", "//mnt/data", "/", "a/b/../c"})
	if want := []string{"proc", "mnt/data", "a/c"}; !slices.Equal(p.paths, want) {
		t.Errorf("paths = %q, want %q", p.paths, want)
	}
	for _, tc := range []struct {
		rel         string
		skip, holds bool
	}{
		{"", false, true},
		{"proc", true, false},
		{"proc/self/fd", true, false},
		{"procfs", false, false},
		{"mnt", false, true},
		{"mnt/data", true, false},
		{"mnt/database", false, false},
		{"a", false, true},
		{"a/c/x", true, false},
	} {
		if got := p.skip(tc.rel); got != tc.skip {
			t.Errorf("skip(%q) = %v, want %v", tc.rel, got, tc.skip)
		}
		if got := p.holds(tc.rel); got != tc.holds {
			t.Errorf("holds(%q) = %v, want %v", tc.rel, got, tc.holds)
		}
	}
	if q := p.with("/run/secrets/x"); !q.skip("run/secrets/x") || p.skip("run/secrets/x") {
		t.Errorf("with: %q, and the original became %q", q.paths, p.paths)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/my\040dir`:    "/mnt/my dir",
		`/a\011b\012c\134d`: "/a\tb\nc\\d",
		`/plain`:            "/plain",
		`/trailing\04`:      `/trailing\04`,
		`/not\08octal`:      `/not\08octal`,
		`/end\040`:          "/end ",
		`\040\040`:          "  ",
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProtectedFromMountinfo(t *testing.T) {
	got, err := Protected()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "proc") {
		t.Errorf("Protected() = %q, lacks proc", got)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] == "/" {
			continue
		}
		n++
		if mp := unescapeMountinfo(f[4]); !slices.Contains(got, mp) {
			t.Errorf("Protected() lacks the mount point %s", mp)
		}
	}
	testutil.Require(t, n > 0, "no mount point besides / in /proc/self/mountinfo")
	if p := newProtected(got); !p.skip("proc/self/status") || !p.skip("sys/kernel") {
		t.Errorf("the protected set %q does not cover /proc and /sys", p.paths)
	}
}

// TestSyncHeldNotDir is the way back from a snapshot that has a symlink or
// a file where the container has a directory holding a mount point: the
// sync must not write through the symlink, and keeps the snapshot's entry
// unless the step put something else there.
func TestSyncHeldNotDir(t *testing.T) {
	testutil.RequireRoot(t)
	prot := newProtected([]string{"srv/mnt"})
	for _, tc := range []struct {
		name     string
		stepFile bool // the step wrote srv/new
	}{{"kept", false}, {"replaced", true}} {
		for _, kind := range []string{"symlink", "file"} {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				root, snap, outside := t.TempDir(), t.TempDir(), t.TempDir()
				fr, fs := fixture{t, root}, fixture{t, snap}
				fr.file("srv/mnt/x", []byte("mounted"), 0o644, 0, 0, ts(1, 0))
				if tc.stepFile {
					fr.file("srv/new", []byte("from the step"), 0o644, 0, 0, ts(2, 0))
				}
				if kind == "symlink" {
					fs.symlink("srv", outside, 0, 0, ts(3, 0))
				} else {
					fs.file("srv", []byte("a file"), 0o644, 0, 0, ts(3, 0))
				}
				before := lstat(t, outside)
				syncTrees(t, root, snap, prot)
				if names, _ := readNames(outside); len(names) != 0 {
					t.Errorf("wrote %q through the snapshot's symlink into %s", names, outside)
				}
				if after := lstat(t, outside); after.Mode != before.Mode || after.Ctim != before.Ctim {
					t.Errorf("%s: mode %o, ctime %v, was %o, %v: changed through the snapshot's symlink", outside, after.Mode, after.Ctim, before.Mode, before.Ctim)
				}
				st := lstat(t, fs.p("srv"))
				if !tc.stepFile {
					if st.Mode&unix.S_IFMT == unix.S_IFDIR {
						t.Errorf("srv: replaced by a directory holding only protected paths")
					}
					return
				}
				if st.Mode&unix.S_IFMT != unix.S_IFDIR {
					t.Fatalf("srv: mode %o, want the step's directory", st.Mode)
				}
				if b, err := os.ReadFile(fs.p("srv/new")); string(b) != "from the step" {
					t.Errorf("srv/new = %q, %v", b, err)
				}
				if _, err := os.Lstat(fs.p("srv/mnt")); err == nil {
					t.Errorf("srv/mnt: protected, but copied")
				}
			})
		}
	}
}

// TestRecordTreeWaitsForTheClock checks that once recordTree returns, a
// change to any recorded file gets a ctime other than its stamp, even where
// file times come from the coarse clock.
func TestRecordTreeWaitsForTheClock(t *testing.T) {
	root := t.TempDir()
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(root, strings.Repeat("f", i+1)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := recordTree(root, newProtected(nil))
	if err != nil {
		t.Fatal(err)
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now); err != nil {
		t.Fatal(err)
	}
	for rel, s := range rec {
		if !after(now, s.ctime) {
			t.Errorf("%s: ctime %v not before the coarse clock %v when recordTree returned", rel, s.ctime, now)
		}
	}
	p := filepath.Join(root, "f")
	if err := os.WriteFile(p, []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, p); rec["f"].ctime == st.Ctim {
		t.Errorf("f: written right after recordTree, ctime still %v", st.Ctim)
	}
}
