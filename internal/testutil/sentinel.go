package testutil

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Sentinel is host state a hostile input must not reach: a directory tree
// outside every state dir and output (a file, a 0600 "passwd", a subdir),
// and names under /tmp that escapes aim at. [Sentinel.Check] compares the
// tree's contents, modes, owners, mtimes and link counts with the snapshot
// taken when it was made, and checks that the escape targets do not exist.
type Sentinel struct {
	// Dir is the sentinel tree's root (absolute).
	Dir string
	// File is Dir/sentinel, whose bytes are [Sentinel.Secret].
	File string
	// Passwd is Dir/passwd, a passwd file naming user app as uid 4242: a
	// build that reads it instead of the image's own has followed a link out.
	Passwd string
	// Secret is 32 random bytes, hex: the content of File.
	Secret string
	// Escape is a fresh name in /tmp ("/tmp/imgbuild-escape-<random>"); a
	// traversal aims at Escape and Escape+"-*", which must never exist.
	Escape string

	before string
}

// NewSentinel creates a sentinel tree in a new directory under parent (the
// system temp dir when ""). Remove it with [Sentinel.Remove].
func NewSentinel(parent string) (*Sentinel, error) {
	dir, err := os.MkdirTemp(parent, "imgbuild-sentinel-")
	if err != nil {
		return nil, err
	}
	r := make([]byte, 16)
	_, _ = rand.Read(r)
	s := &Sentinel{
		Dir:    dir,
		File:   filepath.Join(dir, "sentinel"),
		Passwd: filepath.Join(dir, "passwd"),
		Escape: filepath.Join(os.TempDir(), "imgbuild-escape-"+hex.EncodeToString(r[:8])),
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	s.Secret = hex.EncodeToString(secret)
	for _, f := range []struct {
		path string
		body string
		mode os.FileMode
	}{
		{s.File, s.Secret, 0o644},
		{s.Passwd, "root:x:0:0:root:/root:/bin/sh\napp:x:4242:4242:host app:/:/bin/sh\n", 0o600},
		{filepath.Join(dir, "sub", "keep"), "keep\n", 0o644},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(f.path, []byte(f.body), f.mode); err != nil {
			return nil, err
		}
	}
	if s.before, err = treeState(dir); err != nil {
		return nil, err
	}
	return s, nil
}

// Check fails t if anything in the sentinel tree changed or an escape
// target exists.
func (s *Sentinel) Check(t testing.TB) {
	t.Helper()
	if err := s.Verify(); err != nil {
		t.Error(err)
	}
}

// Verify is [Sentinel.Check] returning an error.
func (s *Sentinel) Verify() error {
	var errs []error
	now, err := treeState(s.Dir)
	if err != nil {
		errs = append(errs, fmt.Errorf("reading sentinel %s: %w", s.Dir, err))
	} else if now != s.before {
		errs = append(errs, fmt.Errorf("host sentinel %s changed:\nbefore:\n%s\nafter:\n%s", s.Dir, s.before, now))
	}
	matches, _ := filepath.Glob(s.Escape + "*")
	for _, m := range matches {
		errs = append(errs, fmt.Errorf("escape target %s exists on the host", m))
	}
	return errors.Join(errs...)
}

// Remove deletes the sentinel tree and any escape targets.
func (s *Sentinel) Remove() {
	os.RemoveAll(s.Dir)
	matches, _ := filepath.Glob(s.Escape + "*")
	for _, m := range matches {
		os.RemoveAll(m)
	}
}

// treeState describes every entry under dir, one line each: path, mode,
// owner, size, mtime, link count and a content hash (or link target).
func treeState(dir string) (string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		var uid, gid uint32
		var nlink uint64
		if st != nil {
			uid, gid, nlink = st.Uid, st.Gid, uint64(st.Nlink)
		}
		what := ""
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			what = hex.EncodeToString(sum[:8])
		case fi.Mode()&fs.ModeSymlink != 0:
			what, _ = os.Readlink(p)
		}
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, fmt.Sprintf("%s %v %d:%d size=%d mtime=%d nlink=%d %s",
			rel, fi.Mode(), uid, gid, fi.Size(), fi.ModTime().UnixNano(), nlink, what))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}
