//go:build linux

package embedded

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// TestDetectSnapshotterCached: the overlayfs probe (a mount whose unmount
// syncs the filesystem) runs once per boot and filesystem, and an answer
// recorded for another boot is not trusted.
func TestDetectSnapshotterCached(t *testing.T) {
	testutil.RequireRoot(t)
	root, records := t.TempDir(), filepath.Join(t.TempDir(), "records")
	if got := detectSnapshotter(root, records); got != "overlayfs" {
		t.Fatalf("detectSnapshotter on %s = %q, want overlayfs", root, got)
	}
	found, _ := filepath.Glob(filepath.Join(records, "snapshotter-*"))
	if len(found) != 1 {
		t.Fatalf("probe records: %v, want one", found)
	}
	probe := found[0]
	b, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	// Another state dir on the same filesystem uses the same record.
	if err := os.WriteFile(probe, []byte(strings.Replace(string(b), "snapshotter=overlayfs", "snapshotter=native", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := detectSnapshotter(t.TempDir(), records); got != "native" {
		t.Errorf("another state dir on the same filesystem: %q, want the recorded native", got)
	}
	key, _, _ := strings.Cut(string(b), "snapshotter=")

	// The record answers without probing: make it say native.
	if err := os.WriteFile(probe, []byte(key+"snapshotter=native\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := detectSnapshotter(root, records); got != "native" {
		t.Errorf("with a record for this boot saying native: %q, want native (the record was not used)", got)
	}

	// A record from another boot is probed again and replaced.
	other := strings.Replace(key, "boot=", "boot=x", 1)
	if err := os.WriteFile(probe, []byte(other+"snapshotter=native\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := detectSnapshotter(root, records); got != "overlayfs" {
		t.Errorf("with a record from another boot: %q, want overlayfs from a new probe", got)
	}
	if b, _ := os.ReadFile(probe); !strings.Contains(string(b), "snapshotter=overlayfs") || strings.Contains(string(b), "boot=x") {
		t.Errorf("record not replaced: %q", b)
	}
}
