//go:build linux

package builder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// WorkerRecordFile, in a state dir, records how its build cache was made:
// the snapshotter, and whether BuildKit ran rootless (in a user namespace).
const WorkerRecordFile = "worker.json"

type workerRecord struct {
	Snapshotter string `json:"snapshotter"`
	Rootless    bool   `json:"rootless"`
}

// StateMismatchError is a state dir refused because this process would see
// its build cache differently from the processes that made it. Each
// snapshotter keeps its snapshots and blobs in a worker dir of its own
// (runc-NAME), and BuildKit deletes the state dir's records whose data it
// cannot find in the worker it opens; inside and outside a user namespace,
// file owners and overlayfs' xattrs read differently.
type StateMismatchError struct {
	// Root is the state dir.
	Root string
	// Snapshotter and Rootless made the state dir's build cache.
	// Snapshotter is "" when the state dir has no record and holds the data
	// of several snapshotters, listed in Found.
	Snapshotter string
	Rootless    bool
	Found       []string
	// WantSnapshotter and WantRootless are what this process would use;
	// Explicit says WantSnapshotter was asked for, not detected.
	WantSnapshotter string
	WantRootless    bool
	Explicit        bool
}

func (e *StateMismatchError) Error() string {
	how := "detected"
	if e.Explicit {
		how = "asked for"
	}
	if e.Snapshotter == "" {
		return fmt.Sprintf("state dir %s holds the build cache of the %s snapshotters and no record of which made its records; this run would use %s (%s): refusing to open it, which could drop the other's records",
			e.Root, strings.Join(e.Found, " and "), e.WantSnapshotter, how)
	}
	made, want := "", ""
	if e.Rootless != e.WantRootless {
		made, want = rootlessWord(e.Rootless), rootlessWord(e.WantRootless)
	}
	return fmt.Sprintf("state dir %s was made with the %s snapshotter%s; this run would use %s (%s)%s: refusing to open it, which would drop its build cache",
		e.Root, e.Snapshotter, made, e.WantSnapshotter, how, want)
}

func rootlessWord(rootless bool) string {
	if rootless {
		return ", rootless"
	}
	return ", not rootless"
}

// checkWorkerRecord makes sure that this process, with the snapshotter
// resolved and rootless as given, sees root's build cache the way the
// processes that made it did, and returns a [*StateMismatchError] if not. It
// runs with the state dir's lock held, before anything opens the databases.
// A state dir with no record gets one: it adopts this process's settings when
// they agree with what is on disk (the worker dirs holding data, and who owns
// them). A record whose worker dir holds nothing any more is replaced, as
// there is no cache left to lose.
func checkWorkerRecord(root, snapshotter string, explicit, rootless bool) error {
	path := filepath.Join(root, WorkerRecordFile)
	want := workerRecord{Snapshotter: snapshotter, Rootless: rootless}
	mismatch := func(made workerRecord) error {
		return &StateMismatchError{Root: root, Snapshotter: made.Snapshotter, Rootless: made.Rootless,
			WantSnapshotter: snapshotter, WantRootless: rootless, Explicit: explicit}
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var rec workerRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Snapshotter == "" {
			return fmt.Errorf("state dir %s: %s does not say how its build cache was made (%q); remove the file to have it made again from what the state dir holds", root, path, b)
		}
		if rec == want {
			return nil
		}
		if workerHasData(root, rec.Snapshotter) {
			return mismatch(rec)
		}
	case errors.Is(err, fs.ErrNotExist):
		found := workersWithData(root)
		switch {
		case len(found) == 0:
		case slices.Contains(found, snapshotter) && (len(found) == 1 || explicit):
			// Made before records were kept: a worker dir made by a
			// process in another user namespace (or outside one) is owned
			// by another uid as this process sees it.
			if sameOwner(root, snapshotter) {
				break
			}
			return mismatch(workerRecord{Snapshotter: snapshotter, Rootless: !rootless})
		case len(found) == 1:
			return mismatch(workerRecord{Snapshotter: found[0], Rootless: rootless == sameOwner(root, found[0])})
		default:
			return &StateMismatchError{Root: root, Found: found, WantSnapshotter: snapshotter, WantRootless: rootless, Explicit: explicit}
		}
	default:
		return fmt.Errorf("state dir %s: reading how its build cache was made: %w", root, err)
	}
	data, _ := json.Marshal(want)
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("state dir %s: recording its snapshotter: %w", root, err)
	}
	return nil
}

// workerDir is where BuildKit's runc worker keeps a snapshotter's data (see
// internal/embedded's newWorkerOpt).
func workerDir(root, snapshotter string) string { return statedir.At(root).Worker(snapshotter).Path() }

// workerHasData reports whether the snapshotter's worker dir holds snapshots
// or blobs, the data the state dir's records point at.
func workerHasData(root, snapshotter string) bool {
	w := workerDir(root, snapshotter)
	return hasEntries(filepath.Join(w, "snapshots", "snapshots")) || hasEntries(filepath.Join(statedir.Worker(w).Content(), "blobs", "sha256"))
}

// workersWithData lists the snapshotters whose worker dirs hold data, sorted.
func workersWithData(root string) []string {
	var out []string
	for _, w := range statedir.At(root).Workers() {
		name := w.Snapshotter()
		// Set aside by recoverState: not opened again.
		if strings.Contains(name, ".corrupt-") {
			continue
		}
		if workerHasData(root, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func hasEntries(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// sameOwner reports whether this process's euid owns the snapshotter's
// worker dir, as this process's user namespace maps it.
func sameOwner(root, snapshotter string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(workerDir(root, snapshotter), &st); err != nil {
		return true
	}
	return int(st.Uid) == os.Geteuid()
}
