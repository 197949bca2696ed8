package statedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// ResultsFile is the index of recent build results inside the state dir: the
// image store keeps the blobs they reference and nothing else.
const ResultsFile = "results.json"

// Result is one built image recorded in [ResultsFile].
type Result struct {
	Digest v1.Hash   `json:"digest"`
	Time   time.Time `json:"time"`
}

// RecordResult adds the image manifest dgst to root's results index, keeping
// the newest keep entries (the default, 0, means [DefaultKeepResults]). It
// takes a lock of its own on the index, so concurrent builds sharing the
// state dir can record safely.
func recordResult(root string, dgst v1.Hash, keep int) error {
	return updateResults(root, func(rs []Result) []Result {
		rs = slices.DeleteFunc(rs, func(r Result) bool { return r.Digest == dgst })
		rs = append(rs, Result{Digest: dgst, Time: time.Now().UTC()})
		if keep <= 0 {
			keep = DefaultKeepResults
		}
		if len(rs) > keep {
			rs = rs[len(rs)-keep:]
		}
		return rs
	})
}

// updateResults applies f to the results index under an flock, writing the
// new index through a rename so a crash never leaves it half written.
func updateResults(root string, f func([]Result) []Result) error {
	path := At(root).File(ResultsFile)
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening results index lock: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking results index: %w", err)
	}
	rs, err := readResults(path)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(f(rs), "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results index: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing results index: %w", err)
	}
	return nil
}

// readResults reads the index; a missing or unreadable index is empty (its
// only use is to keep blobs, so losing it costs cache, not correctness).
func readResults(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading results index: %w", err)
	}
	var rs []Result
	if json.Unmarshal(b, &rs) != nil {
		return nil, nil
	}
	return rs, nil
}

// ImagePruneOptions selects which results [Dir.PruneImages] forgets before it
// removes unreferenced blobs.
type ImagePruneOptions struct {
	// All forgets every result. The default keeps them.
	All bool
	// OlderThan forgets results recorded longer ago than this. The default,
	// 0, keeps results of any age.
	OlderThan time.Duration
}

// PruneImages removes from the image store at root/images every blob that no
// result in the index references, after forgetting the results opts selects,
// and returns the bytes freed. The caller must make sure no build is writing
// to the store.
func pruneImages(root string, opts ImagePruneOptions) (int64, error) {
	var keep []Result
	err := updateResults(root, func(rs []Result) []Result {
		if opts.All {
			rs = nil
		}
		if opts.OlderThan > 0 {
			cut := time.Now().Add(-opts.OlderThan)
			rs = slices.DeleteFunc(rs, func(r Result) bool { return r.Time.Before(cut) })
		}
		keep = rs
		return rs
	})
	if err != nil {
		return 0, err
	}
	blobs := filepath.Join(At(root).Images(), "blobs")
	live := map[string]bool{}
	for _, r := range keep {
		markLive(blobs, r.Digest, live)
	}
	var freed int64
	err = filepath.WalkDir(blobs, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(blobs, p)
		alg, hex := filepath.Split(rel)
		if live[filepath.Clean(alg)+":"+hex] {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			freed += fi.Size()
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing image blob: %w", err)
		}
		return nil
	})
	if err != nil {
		return freed, fmt.Errorf("pruning image store: %w", err)
	}
	return freed, nil
}

// markLive marks dgst and, for a manifest or an index, everything it
// references. A missing or unparsable blob marks only itself.
func markLive(blobs string, dgst v1.Hash, live map[string]bool) {
	if live[dgst.String()] {
		return
	}
	live[dgst.String()] = true
	b, err := os.ReadFile(filepath.Join(blobs, dgst.Algorithm, dgst.Hex))
	if err != nil {
		return
	}
	var m struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(b, &m) != nil {
		return
	}
	if m.Config != nil {
		live[m.Config.Digest.String()] = true
	}
	for _, l := range m.Layers {
		live[l.Digest.String()] = true
	}
	for _, c := range m.Manifests {
		markLive(blobs, c.Digest, live)
	}
}

// DirSize is the total size of the regular files under dir.
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
