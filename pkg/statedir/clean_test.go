package statedir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTakeClean(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, p := range []string{"cache.db", "history.db", "runc-overlayfs/metadata_v2.db", "runc-overlayfs/containerdmeta.db"} {
		writeBolt(t, filepath.Join(root, p))
	}
	if takeClean(root) {
		t.Fatal("TakeClean without a mark = true")
	}
	if err := markClean(root); err != nil {
		t.Fatal(err)
	}
	if !takeClean(root) {
		t.Fatal("TakeClean right after MarkClean = false")
	}
	if takeClean(root) {
		t.Error("the mark vouched twice: TakeClean must remove it")
	}

	// A database written after the mark (a process that took the state
	// dir without the mark, then died) voids it.
	if err := markClean(root); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(root, "runc-overlayfs", "containerdmeta.db")
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(db, later, later); err != nil {
		t.Fatal(err)
	}
	if takeClean(root) {
		t.Error("TakeClean = true after containerdmeta.db changed")
	}

	// So does a mark from another boot: a power loss may have kept pages
	// that were never synced from reaching the disk.
	if err := markClean(root); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, cleanFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m cleanMark
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m.BootID = "00000000-0000-0000-0000-000000000000"
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if takeClean(root) {
		t.Error("TakeClean = true for a mark from another boot")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("stale mark left in place: %v", err)
	}
}
