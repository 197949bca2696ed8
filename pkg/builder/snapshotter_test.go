//go:build linux

package builder

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
	root := t.TempDir()
	if got := detectSnapshotter(root); got != "overlayfs" {
		t.Fatalf("detectSnapshotter on %s = %q, want overlayfs", root, got)
	}
	probe := filepath.Join(root, snapshotterProbe)
	b, err := os.ReadFile(probe)
	if err != nil {
		t.Fatalf("no probe record: %v", err)
	}
	key, _, _ := strings.Cut(string(b), "snapshotter=")

	// The record answers without probing: make it say native.
	if err := os.WriteFile(probe, []byte(key+"snapshotter=native\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := detectSnapshotter(root); got != "native" {
		t.Errorf("with a record for this boot saying native: %q, want native (the record was not used)", got)
	}

	// A record from another boot is probed again and replaced.
	other := strings.Replace(key, "boot=", "boot=x", 1)
	if err := os.WriteFile(probe, []byte(other+"snapshotter=native\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := detectSnapshotter(root); got != "overlayfs" {
		t.Errorf("with a record from another boot: %q, want overlayfs from a new probe", got)
	}
	if b, _ := os.ReadFile(probe); !strings.Contains(string(b), "snapshotter=overlayfs") || strings.Contains(string(b), "boot=x") {
		t.Errorf("record not replaced: %q", b)
	}
}
