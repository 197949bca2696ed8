//go:build linux

package builder

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// withSnapshot gives root's worker dir for snapshotter one snapshot, as a
// build leaves it.
func withSnapshot(t *testing.T, root, snapshotter string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "runc-"+snapshotter, "snapshots", "snapshots", "1"), 0o700); err != nil {
		t.Fatal(err)
	}
}

func writeRecord(t *testing.T, root, snapshotter string, rootless bool) {
	t.Helper()
	b, _ := json.Marshal(workerRecord{Snapshotter: snapshotter, Rootless: rootless})
	if err := os.WriteFile(filepath.Join(root, WorkerRecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readRecord(t *testing.T, root string) workerRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, WorkerRecordFile))
	if err != nil {
		t.Fatal(err)
	}
	var r workerRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func mismatchError(t *testing.T, err error) *StateMismatchError {
	t.Helper()
	var me *StateMismatchError
	if !errors.As(err, &me) {
		t.Fatalf("got %v, want a *StateMismatchError", err)
	}
	return me
}

// TestWorkerRecordNew: a new state dir records what first opened it, and
// the same settings open it again.
func TestWorkerRecordNew(t *testing.T) {
	root := t.TempDir()
	if err := checkWorkerRecord(root, "overlayfs", false, true); err != nil {
		t.Fatal(err)
	}
	if got := readRecord(t, root); got != (workerRecord{"overlayfs", true}) {
		t.Errorf("record %+v, want overlayfs, rootless", got)
	}
	withSnapshot(t, root, "overlayfs")
	if err := checkWorkerRecord(root, "overlayfs", true, true); err != nil {
		t.Errorf("reopening with the recorded settings: %v", err)
	}
}

// TestWorkerRecordRefused: a state dir is refused by a process that would
// open it with another snapshotter, detected or asked for, or on the other
// side of a user namespace; the error names the state dir and both views,
// and the record stays.
func TestWorkerRecordRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sn        string
		explicit  bool
		rootless  bool
		wantParts []string
	}{
		{"detected", "overlayfs", false, false, []string{"made with the native snapshotter", "would use overlayfs (detected)"}},
		{"asked for", "overlayfs", true, false, []string{"made with the native snapshotter", "would use overlayfs (asked for)"}},
		{"rootless", "native", false, true, []string{"made with the native snapshotter, not rootless;", "would use native (detected), rootless:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeRecord(t, root, "native", false)
			withSnapshot(t, root, "native")
			err := checkWorkerRecord(root, tc.sn, tc.explicit, tc.rootless)
			me := mismatchError(t, err)
			if me.Root != root || me.Snapshotter != "native" || me.Rootless || me.WantSnapshotter != tc.sn || me.WantRootless != tc.rootless || me.Explicit != tc.explicit {
				t.Errorf("error fields %+v", me)
			}
			for _, p := range append(tc.wantParts, "state dir "+root+" ") {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not say %q", err, p)
				}
			}
			if got := readRecord(t, root); got != (workerRecord{"native", false}) {
				t.Errorf("record changed to %+v", got)
			}
		})
	}
}

// TestWorkerRecordNothingToLose: a record whose worker dir holds nothing
// (pruned, set aside, or a first run that failed early) yields to the new
// settings.
func TestWorkerRecordNothingToLose(t *testing.T) {
	root := t.TempDir()
	writeRecord(t, root, "overlayfs", false)
	if err := os.MkdirAll(filepath.Join(root, "runc-overlayfs", "snapshots", "snapshots"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := checkWorkerRecord(root, "native", false, false); err != nil {
		t.Fatal(err)
	}
	if got := readRecord(t, root); got != (workerRecord{"native", false}) {
		t.Errorf("record %+v, want native", got)
	}
}

// TestWorkerRecordUnrecorded: a state dir made before records were kept
// adopts this process's settings only if its worker dirs agree.
func TestWorkerRecordUnrecorded(t *testing.T) {
	t.Run("matching worker", func(t *testing.T) {
		root := t.TempDir()
		withSnapshot(t, root, "overlayfs")
		// An empty worker dir, as a du outside the user namespace left it.
		os.MkdirAll(filepath.Join(root, "runc-native", "snapshots", "snapshots"), 0o700)
		if err := checkWorkerRecord(root, "overlayfs", false, false); err != nil {
			t.Fatal(err)
		}
		if got := readRecord(t, root); got != (workerRecord{"overlayfs", false}) {
			t.Errorf("record %+v, want overlayfs", got)
		}
	})
	t.Run("other worker", func(t *testing.T) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "runc-overlayfs", "content", "blobs", "sha256", "ab"), 0o700); err != nil {
			t.Fatal(err)
		}
		me := mismatchError(t, checkWorkerRecord(root, "native", false, false))
		if me.Snapshotter != "overlayfs" || me.WantSnapshotter != "native" {
			t.Errorf("error fields %+v", me)
		}
		if _, err := os.Stat(filepath.Join(root, WorkerRecordFile)); err == nil {
			t.Error("a record was written for a refused state dir")
		}
	})
	t.Run("several workers", func(t *testing.T) {
		root := t.TempDir()
		withSnapshot(t, root, "overlayfs")
		withSnapshot(t, root, "native")
		err := checkWorkerRecord(root, "overlayfs", false, false)
		me := mismatchError(t, err)
		if me.Snapshotter != "" || !slices.Equal(me.Found, []string{"native", "overlayfs"}) {
			t.Errorf("error fields %+v", me)
		}
		if !strings.Contains(err.Error(), "native and overlayfs snapshotters and no record") {
			t.Errorf("error %q", err)
		}
		// Asking for one of them picks it.
		if err := checkWorkerRecord(root, "native", true, false); err != nil {
			t.Fatal(err)
		}
		if got := readRecord(t, root); got != (workerRecord{"native", false}) {
			t.Errorf("record %+v, want native", got)
		}
	})
	t.Run("other owner", func(t *testing.T) {
		testutil.RequireRoot(t)
		root := t.TempDir()
		withSnapshot(t, root, "overlayfs")
		// Made in a user namespace whose root is uid 100000 here.
		if err := os.Chown(filepath.Join(root, "runc-overlayfs"), 100000, 100000); err != nil {
			t.Fatal(err)
		}
		me := mismatchError(t, checkWorkerRecord(root, "overlayfs", false, false))
		if me.Snapshotter != "overlayfs" || !me.Rootless || me.WantRootless {
			t.Errorf("error fields %+v, want made rootless", me)
		}
	})
}

// TestWorkerRecordUnreadable: a record that says nothing is an error naming
// it, not a guess.
func TestWorkerRecordUnreadable(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, WorkerRecordFile)
	if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := checkWorkerRecord(root, "native", false, false)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("got %v, want an error naming %s", err, p)
	}
}
