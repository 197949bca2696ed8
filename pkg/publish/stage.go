package publish

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Staged is a file output that something else writes (BuildKit's
// exporters, during the build): a temporary file or directory beside Dest,
// renamed into place by [Staged.Commit], so that a failed build leaves
// nothing at Dest.
type Staged struct {
	out Output
	// tmp is the temporary file or directory; "" for standard output.
	tmp  string
	file *stagedFile
}

// Stage makes o's temporary place. Dest "-" is stdout for the tarballs.
// Stage is called before the build, so that a missing directory fails
// before any work.
func Stage(o Output, stdout io.Writer) (*Staged, error) {
	s := &Staged{out: o}
	if o.Dest == "-" {
		if o.Type == Local {
			return nil, fmt.Errorf("%s output: a directory cannot go to standard output", o.Type)
		}
		s.file = &stagedFile{w: stdout}
		return s, nil
	}
	dir, base := filepath.Dir(o.Dest), filepath.Base(o.Dest)
	if o.Type == Local {
		tmp, err := os.MkdirTemp(dir, "."+base+".tmp-")
		if err != nil {
			return nil, fmt.Errorf("%s output %s: %w", o.Type, o.Dest, err)
		}
		// MkdirTemp makes 0700; Chmod is not subject to the umask.
		if err := os.Chmod(tmp, 0o755); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("%s output %s: %w", o.Type, o.Dest, err)
		}
		s.tmp = tmp
		return s, nil
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("%s output %s: %w", o.Type, o.Dest, err)
	}
	s.tmp = f.Name()
	s.file = &stagedFile{w: f, f: f}
	return s, nil
}

// Dir is where a [Local] output is to be written.
func (s *Staged) Dir() string {
	if s.out.Type == Local {
		return s.tmp
	}
	return ""
}

// File is where a tarball output is to be written. Its Close (the
// exporter's) flushes it to disk; the file is renamed by Commit only.
func (s *Staged) File() io.WriteCloser {
	if s.file == nil {
		return nil
	}
	return s.file
}

// Output is the output s stages.
func (s *Staged) Output() Output { return s.out }

// Commit moves the written output to Dest. A [Local] output replaces what
// Dest held at the same paths and keeps the rest, as buildx's local
// exporter does.
func (s *Staged) Commit() error {
	if err := s.commit(); err != nil {
		s.Discard()
		return fmt.Errorf("writing %s output %s: %w", s.out.Type, s.out.Dest, err)
	}
	return nil
}

func (s *Staged) commit() error {
	if s.file != nil {
		if !s.file.used() {
			return errors.New("the build wrote nothing to it")
		}
		if err := s.file.Close(); err != nil {
			return err
		}
	}
	if s.tmp == "" {
		return nil
	}
	if s.out.Type != Local {
		if err := os.Chmod(s.tmp, 0o644); err != nil {
			return err
		}
		return os.Rename(s.tmp, s.out.Dest)
	}
	// rename(2) replaces an empty directory, so only a directory with
	// content in it is merged into.
	if err := os.Rename(s.tmp, s.out.Dest); err == nil || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := mergeDir(s.tmp, s.out.Dest); err != nil {
		return err
	}
	return os.RemoveAll(s.tmp)
}

// Discard removes what was staged. It is safe to call after Commit.
func (s *Staged) Discard() {
	if s.file != nil {
		_ = s.file.Close() // what was written is removed below
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// mergeDir moves src's entries into dst: a directory present in both is
// merged, anything else replaces dst's entry by rename.
func mergeDir(src, dst string) error {
	if fi, err := os.Lstat(dst); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dst)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if e.IsDir() {
			if fi, err := os.Lstat(to); err == nil && fi.IsDir() {
				if err := mergeDir(from, to); err != nil {
					return err
				}
				continue
			}
		}
		if err := os.Rename(from, to); err != nil {
			// A directory in the way of a file or link.
			if rerr := os.RemoveAll(to); rerr != nil {
				return rerr
			}
			if err := os.Rename(from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// stagedFile is the writer an exporter gets: it records that it was
// written to, and closes (with an fsync) once.
type stagedFile struct {
	w      io.Writer
	f      *os.File // nil for stdout
	mu     sync.Mutex
	wrote  bool
	closed bool
	err    error
}

func (s *stagedFile) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.wrote = true
	s.mu.Unlock()
	return s.w.Write(p)
}

func (s *stagedFile) used() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wrote
}

// Close implements io.Closer.
func (s *stagedFile) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.f == nil {
		return s.err
	}
	s.closed = true
	if s.err = s.f.Sync(); s.err != nil {
		s.f.Close()
		return s.err
	}
	s.err = s.f.Close()
	return s.err
}
