package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func writeBolt(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverDatabases(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, p := range []string{"cache.db", "history.db", "runc-overlayfs/metadata_v2.db", "runc-overlayfs/containerdmeta.db"} {
		writeBolt(t, filepath.Join(root, p))
	}
	var warnings []string
	warn := func(s string) { warnings = append(warnings, s) }
	if err := recoverDatabases(root, warn); err != nil || len(warnings) != 0 {
		t.Fatalf("healthy state dir: %v, warnings %q", err, warnings)
	}

	// A garbled solver database is set aside alone.
	if err := os.WriteFile(filepath.Join(root, "cache.db"), []byte(strings.Repeat("junk", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := recoverDatabases(root, warn); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "cache.db is corrupt") {
		t.Errorf("warnings = %q", warnings)
	}
	if _, err := os.Stat(filepath.Join(root, "cache.db")); !os.IsNotExist(err) {
		t.Errorf("cache.db still in place: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "history.db")); err != nil {
		t.Errorf("healthy history.db moved: %v", err)
	}

	// A garbled worker database sets aside the worker dir and history.db.
	if err := os.WriteFile(filepath.Join(root, "runc-overlayfs/metadata_v2.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	warnings = nil
	if err := recoverDatabases(root, warn); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(root, "*"))
	for _, p := range left {
		if !strings.Contains(p, corruptSuffix) {
			t.Errorf("%s not set aside", p)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "runc-overlayfs is corrupt (metadata_v2.db") {
		t.Errorf("warnings = %q", warnings)
	}

	freed, err := removeSetAside(root)
	if err != nil || freed == 0 {
		t.Errorf("RemoveSetAside = %d, %v", freed, err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "*")); len(left) != 0 {
		t.Errorf("left after RemoveSetAside: %v", left)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{`/a/b`: "/a/b", `/a\040b`: "/a b", `/a\134b`: `/a\b`, `/x\04`: `/x\04`} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStaleMountsNone(t *testing.T) {
	t.Parallel()
	if m, err := MountsUnder(t.TempDir()); err != nil || len(m) != 0 {
		t.Errorf("MountsUnder(empty dir) = %v, %v", m, err)
	}
}
