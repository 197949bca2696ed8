//go:build linux

package inplace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// protected is the set of paths (relative to the root, no leading slash)
// that a sync neither reads nor writes: /proc, /dev, mount points, imgbuild's
// own files. Their ancestors are kept as directories.
type protected struct {
	paths []string
}

func newProtected(paths []string) *protected {
	p := &protected{}
	for _, x := range paths {
		x = strings.Trim(filepath.Clean("/"+x), "/")
		if x != "" && !slices.Contains(p.paths, x) {
			p.paths = append(p.paths, x)
		}
	}
	return p
}

// with returns p plus more paths (a step's mount targets).
func (p *protected) with(more ...string) *protected {
	return newProtected(append(slices.Clone(p.paths), more...))
}

// skip reports whether rel is protected or under a protected path.
func (p *protected) skip(rel string) bool {
	for _, x := range p.paths {
		if rel == x || strings.HasPrefix(rel, x+"/") {
			return true
		}
	}
	return false
}

// holds reports whether rel is an ancestor of a protected path: it must
// stay a directory.
func (p *protected) holds(rel string) bool {
	if rel == "" {
		return true
	}
	for _, x := range p.paths {
		if strings.HasPrefix(x, rel+"/") {
			return true
		}
	}
	return false
}

// stamp identifies one state of a file in the root: any write, chmod,
// chown, link or rename changes its ctime, which no unprivileged process can
// set back.
type stamp struct {
	ino   uint64
	ctime unix.Timespec
}

// record is the stamps of every path in the root after it was made to
// match a snapshot: what a step left alone still matches it.
type record map[string]stamp

// syncer makes one tree (dst) hold what another (src) holds, as a snapshot
// would: contents, modes, owners, times, xattrs, hard links, devices.
type syncer struct {
	src, dst string
	prot     *protected
	// unchanged reports whether dst's entry is already what src's is; nil
	// compares metadata and content.
	unchanged func(rel string, s, d *unix.Stat_t) bool
	// links maps a source inode to the path it was first copied to, so
	// that hard links stay hard links.
	links map[uint64]string
	// Written counts the entries copied, for the debug log.
	written int
}

func (s *syncer) run() error {
	s.links = map[uint64]string{}
	var st unix.Stat_t
	if err := unix.Lstat(s.src, &st); err != nil {
		return fmt.Errorf("reading %s: %w", s.src, err)
	}
	if err := s.dir("", &st); err != nil {
		return err
	}
	return nil
}

// dir syncs the directory rel, whose source is st.
func (s *syncer) dir(rel string, st *unix.Stat_t) error {
	srcNames, err := readNames(filepath.Join(s.src, rel))
	if err != nil {
		return err
	}
	dstNames, err := readNames(filepath.Join(s.dst, rel))
	if err != nil {
		return err
	}
	for _, n := range dstNames {
		child := join(rel, n)
		if slices.Contains(srcNames, n) || s.prot.skip(child) {
			continue
		}
		if s.prot.holds(child) {
			// Kept for the protected paths in it; the rest goes, or an
			// earlier snapshot's files would reach this step and its
			// layer (a FROM scratch stage has no /etc, which holds hosts).
			if err := s.prune(child); err != nil {
				return err
			}
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dst, child)); err != nil {
			return err
		}
		s.written++
	}
	for _, n := range srcNames {
		child := join(rel, n)
		if s.prot.skip(child) {
			continue
		}
		if err := s.entry(child); err != nil {
			return err
		}
	}
	return s.meta(rel, st, false)
}

func (s *syncer) entry(rel string) error {
	sp, dp := filepath.Join(s.src, rel), filepath.Join(s.dst, rel)
	var st, dt unix.Stat_t
	if err := unix.Lstat(sp, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // gone since the listing
		}
		return fmt.Errorf("reading %s: %w", sp, err)
	}
	derr := unix.Lstat(dp, &dt)
	exists := derr == nil
	if s.prot.holds(rel) {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// A snapshot's file where this container needs a directory
			// (one holding a mount point): left as it is, bar what is
			// not protected in it.
			return s.prune(rel)
		}
		if exists && dt.Mode&unix.S_IFMT != unix.S_IFDIR {
			// The snapshot's symlink or file, which the root kept as a
			// directory: never synced through (a symlink leads out of the
			// snapshot), and replaced only when the step put something
			// beside the protected paths.
			if !s.hasContent(rel) {
				return nil
			}
			if err := os.Remove(dp); err != nil {
				return err
			}
			exists = false
		}
		if !exists {
			if !s.hasContent(rel) {
				// Only there to hold this container's own paths.
				return nil
			}
			if err := os.Mkdir(dp, 0o700); err != nil {
				return err
			}
		}
		return s.dir(rel, &st)
	}
	typ := st.Mode & unix.S_IFMT
	if exists && dt.Mode&unix.S_IFMT == typ && typ != unix.S_IFDIR && s.same(rel, &st, &dt) && s.linked(&st, &dt) {
		if typ == unix.S_IFREG && st.Nlink > 1 {
			if _, ok := s.links[st.Ino]; !ok {
				s.links[st.Ino] = dp
			}
		}
		return nil
	}
	if typ == unix.S_IFDIR {
		if exists && dt.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := os.Remove(dp); err != nil {
				return err
			}
			exists = false
		}
		if !exists {
			if err := os.Mkdir(dp, 0o700); err != nil {
				return err
			}
			s.written++
		}
		return s.dir(rel, &st)
	}
	if exists {
		if err := os.RemoveAll(dp); err != nil {
			return err
		}
	}
	s.written++
	switch typ {
	case unix.S_IFREG:
		if st.Nlink > 1 {
			if first, ok := s.links[st.Ino]; ok {
				return os.Link(first, dp)
			}
			s.links[st.Ino] = dp
		}
		if err := copyFile(sp, dp); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(sp)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dp); err != nil {
			return err
		}
	default: // devices, fifos, sockets
		if err := unix.Mknod(dp, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("creating %s: %w", dp, err)
		}
	}
	return s.meta(rel, &st, true)
}

// prune removes from the destination directory rel, which the source
// does not have as a directory, all but the protected paths it holds.
func (s *syncer) prune(rel string) error {
	var dt unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.dst, rel), &dt); err != nil || dt.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	names, err := readNames(filepath.Join(s.dst, rel))
	if err != nil {
		return err
	}
	for _, n := range names {
		child := join(rel, n)
		switch {
		case s.prot.skip(child):
		case s.prot.holds(child):
			if err := s.prune(child); err != nil {
				return err
			}
		default:
			if err := os.RemoveAll(filepath.Join(s.dst, child)); err != nil {
				return err
			}
			s.written++
		}
	}
	return nil
}

// linked reports whether dst's entry, a later name of a source inode, is a
// link to the first name's: the same link count alone can be links to
// names elsewhere that go later in the sync.
func (s *syncer) linked(st, dt *unix.Stat_t) bool {
	first, ok := s.links[st.Ino]
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink < 2 || !ok {
		return true
	}
	var ft unix.Stat_t
	return unix.Lstat(first, &ft) == nil && ft.Ino == dt.Ino && ft.Dev == dt.Dev
}

// hasContent reports whether the source directory rel, an ancestor of
// protected paths, holds anything else.
func (s *syncer) hasContent(rel string) bool {
	names, err := readNames(filepath.Join(s.src, rel))
	if err != nil {
		return false
	}
	for _, n := range names {
		child := join(rel, n)
		switch {
		case s.prot.skip(child):
		case !s.prot.holds(child):
			return true
		case s.hasContent(child):
			return true
		}
	}
	return false
}

// same reports whether dst's entry already matches src's.
func (s *syncer) same(rel string, st, dt *unix.Stat_t) bool {
	if s.unchanged != nil {
		return s.unchanged(rel, st, dt)
	}
	if st.Mode != dt.Mode || st.Uid != dt.Uid || st.Gid != dt.Gid || st.Size != dt.Size ||
		st.Mtim != dt.Mtim || st.Nlink != dt.Nlink {
		return false
	}
	sp, dp := filepath.Join(s.src, rel), filepath.Join(s.dst, rel)
	if !sameXattrs(sp, dp) {
		return false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return sameContent(sp, dp)
	case unix.S_IFLNK:
		a, err1 := os.Readlink(sp)
		b, err2 := os.Readlink(dp)
		return err1 == nil && err2 == nil && a == b
	default:
		return st.Rdev == dt.Rdev
	}
}

// meta gives dst's entry src's owner, mode, xattrs and times.
func (s *syncer) meta(rel string, st *unix.Stat_t, fresh bool) error {
	dp := filepath.Join(s.dst, rel)
	if rel == "" {
		return nil // the root's own metadata belongs to the container
	}
	if err := unix.Lchown(dp, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dp, err)
	}
	if err := copyXattrs(filepath.Join(s.src, rel), dp, fresh); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears set-ID bits.
		if err := unix.Chmod(dp, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dp, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", dp, err)
	}
	return nil
}

// recordTree stamps every unprotected path under root.
func recordTree(root string, prot *protected) (record, error) {
	rec := record{}
	var newest unix.Timespec
	var walk func(rel string) error
	walk = func(rel string) error {
		names, err := readNames(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		for _, n := range names {
			child := join(rel, n)
			if prot.skip(child) {
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, child), &st); err != nil {
				return err
			}
			rec[child] = stamp{st.Ino, st.Ctim}
			if after(st.Ctim, newest) {
				newest = st.Ctim
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	waitPast(newest)
	return rec, nil
}

// waitPast returns once the clock file times come from has passed t.
// Before Linux 6.13 that is the coarse clock, which moves once a tick (up
// to 10ms): a step writing a file in the tick the sync last set its ctime
// in would leave the same ctime, and the write would be lost.
func waitPast(t unix.Timespec) {
	// Bounded, so that a clock set back cannot stall the build.
	for range 100 {
		var now unix.Timespec
		if unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now) != nil || after(now, t) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func after(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}

// unchangedSince is the unchanged test of a sync from the root back to a
// snapshot: an entry whose stamp is the one recorded when the root matched
// the snapshot has not been touched.
func unchangedSince(rec record) func(string, *unix.Stat_t, *unix.Stat_t) bool {
	return func(rel string, st, _ *unix.Stat_t) bool {
		r, ok := rec[rel]
		return ok && r.ino == st.Ino && r.ctime == st.Ctim
	}
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// *os.File to *os.File: copy_file_range where the kernel can.
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

func sameContent(a, b string) bool {
	fa, err := os.Open(a)
	if err != nil {
		return false
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF)
		}
	}
}

func listXattrs(p string) map[string][]byte {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz <= 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	out := map[string][]byte{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		vs, err := unix.Lgetxattr(p, k, nil)
		if err != nil || vs < 0 {
			continue
		}
		v := make([]byte, vs)
		if vs, err = unix.Lgetxattr(p, k, v); err == nil {
			out[k] = v[:vs]
		}
	}
	return out
}

func sameXattrs(a, b string) bool {
	xa, xb := listXattrs(a), listXattrs(b)
	if len(xa) != len(xb) {
		return false
	}
	for k, v := range xa {
		if w, ok := xb[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// copyXattrs gives dst src's extended attributes (file capabilities, ACLs);
// a fresh dst has none to remove.
func copyXattrs(src, dst string, fresh bool) error {
	xs := listXattrs(src)
	if !fresh {
		for k := range listXattrs(dst) {
			if _, ok := xs[k]; !ok {
				_ = unix.Lremovexattr(dst, k)
			}
		}
	}
	for k, v := range xs {
		if err := unix.Lsetxattr(dst, k, v, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				continue // trusted.* without CAP_SYS_ADMIN, or no xattrs here
			}
			return fmt.Errorf("setting xattr %s on %s: %w", k, dst, err)
		}
	}
	return nil
}
