// Package atomicfile writes files so that readers see the old content or the
// new, never part of it: the content goes to a temporary file of its own in
// the same directory, which is renamed over the path when complete.
// Concurrent writers of one path do not trip over each other's temporary
// file; the last rename wins.
package atomicfile

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes data to path with mode perm. It does not fsync: a crash
// may leave the old content or none, never a torn file. State-dir records
// that are cheap to rebuild use it.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, perm, false, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write creates path with mode perm from what fn writes, without fsync.
// When fn fails, path is left as it was.
func Write(path string, perm fs.FileMode, fn func(io.Writer) error) error {
	return write(path, perm, false, fn)
}

// WriteSynced is [Write] with an fsync before the rename: outputs a user
// keeps (layouts, tarballs, the registry's manifests) use it.
func WriteSynced(path string, perm fs.FileMode, fn func(io.Writer) error) error {
	return write(path, perm, true, fn)
}

func write(path string, perm fs.FileMode, sync bool, fn func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fn(f); err != nil {
		return err
	}
	// CreateTemp makes 0600 files; Chmod is not subject to the umask.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
