package statedir

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Databases the embedded BuildKit keeps in a state dir. The solver's own
// (cache.db, history.db) can be set aside alone: BuildKit treats a missing
// record as a cache miss. A worker's databases describe its snapshots and
// content together, so one bad database sets aside the whole worker dir.
var (
	rootDatabases   = []string{cacheDB, historyDB}
	workerDatabases = []string{metadataDB, containerdMetaDB, filepath.Join("snapshots", "metadata.db")}
)

// corruptSuffix marks what RecoverDatabases set aside.
const corruptSuffix = ".corrupt-"

// RecoverDatabases checks the state dir's bbolt databases and renames any
// that cannot be opened or fail bbolt's consistency check to
// NAME.corrupt-TIMESTAMP, calling warn for each, so that the build goes on
// with an empty cache instead of failing on every run. The caller must hold
// the state dir's lock.
func recoverDatabases(root string, warn func(string)) error {
	stamp := time.Now().UTC().Format("20060102T150405Z")
	setAside := func(path, why string) error {
		dst := path + corruptSuffix + stamp
		if err := os.Rename(path, dst); err != nil {
			return fmt.Errorf("setting aside corrupt %s: %w", path, err)
		}
		warn(fmt.Sprintf("%s is corrupt (%s): set aside as %s; continuing with an empty cache", path, why, filepath.Base(dst)))
		return nil
	}
	workers := At(root).Workers()
	workerLost := false
	for _, wk := range workers {
		w := wk.Path()
		if strings.Contains(filepath.Base(w), corruptSuffix) {
			continue
		}
		for _, db := range workerDatabases {
			if err := checkDatabase(filepath.Join(w, db)); err != nil {
				if err := setAside(w, db+": "+err.Error()); err != nil {
					return err
				}
				workerLost = true
				break
			}
		}
	}
	for _, db := range rootDatabases {
		p := filepath.Join(root, db)
		err := checkDatabase(p)
		if err == nil && workerLost {
			// Its records point into the worker dir just set aside.
			if err := os.Rename(p, p+corruptSuffix+stamp); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("setting aside %s: %w", p, err)
			}
			continue
		}
		if err != nil {
			if err := setAside(p, err.Error()); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDatabase opens a bbolt file read-only and runs its consistency check.
// A missing file is fine: BuildKit creates it.
func checkDatabase(path string) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		// bbolt initialises an empty file; a crash right after creating it
		// leaves one.
		return nil
	}
	// bbolt panics on some kinds of garbage rather than returning an error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }() // read-only: nothing to lose
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return errors.Join(errs...)
	})
}

// StaleMounts lists the mount points under root, deepest first, as
// /proc/self/mountinfo shows them. While the caller holds the state dir's
// lock, any such mount was left by a process that died mid-build.
func MountsUnder(root string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	prefix := filepath.Clean(root) + "/"
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, prefix) {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out), nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountStale detaches every mount under root (see [Dir.StaleMounts]), calling
// warn for each.
func unmountStale(root string, warn func(string)) error {
	mounts, err := MountsUnder(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting stale %s: %w", m, err))
			continue
		}
		warn("unmounted " + m + ", left by an interrupted build")
	}
	return errors.Join(errs...)
}

// RemoveSetAside deletes what [Dir.RecoverDatabases] set aside in root and
// returns the bytes freed. Nothing reads those copies; they are kept only
// until the next prune, for a post-mortem.
func removeSetAside(root string) (int64, error) {
	paths, err := filepath.Glob(filepath.Join(root, "*"+corruptSuffix+"*"))
	if err != nil {
		return 0, err
	}
	var freed int64
	var errs []error
	for _, p := range paths {
		n := DirSize(p)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			n = fi.Size()
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("removing set-aside %s: %w", p, err))
			continue
		}
		freed += n
	}
	return freed, errors.Join(errs...)
}
