package statedir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// putBlob writes b into the image store under root and returns its digest.
func putBlob(t *testing.T, root string, b []byte) v1.Hash {
	t.Helper()
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	dir := filepath.Join(root, "images", "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, h.Hex), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// putImage writes a config, a layer and a manifest and returns the manifest.
func putImage(t *testing.T, root, name string) (manifest v1.Hash, blobs []v1.Hash) {
	t.Helper()
	cfg := putBlob(t, root, []byte(`{"config":"`+name+`"}`))
	layer := putBlob(t, root, []byte("layer of "+name))
	m, err := json.Marshal(v1.Manifest{SchemaVersion: 2, Config: v1.Descriptor{Digest: cfg}, Layers: []v1.Descriptor{{Digest: layer}}})
	if err != nil {
		t.Fatal(err)
	}
	md := putBlob(t, root, m)
	return md, []v1.Hash{md, cfg, layer}
}

func exists(root string, h v1.Hash) bool {
	_, err := os.Stat(filepath.Join(root, "images", "blobs", h.Algorithm, h.Hex))
	return err == nil
}

func TestPruneImages(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	oldM, oldBlobs := putImage(t, root, "old")
	newM, newBlobs := putImage(t, root, "new")
	stray := putBlob(t, root, []byte("half-exported leftover"))
	for _, m := range []v1.Hash{oldM, newM} {
		if err := recordResult(root, m, 0); err != nil {
			t.Fatal(err)
		}
	}

	freed, err := pruneImages(root, ImagePruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exists(root, stray) || freed != int64(len("half-exported leftover")) {
		t.Errorf("stray blob survives or freed = %d", freed)
	}
	for _, h := range append(oldBlobs, newBlobs...) {
		if !exists(root, h) {
			t.Errorf("live blob %s removed", h)
		}
	}

	// Keeping one result drops the older image.
	if err := recordResult(root, newM, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pruneImages(root, ImagePruneOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, h := range oldBlobs {
		if exists(root, h) {
			t.Errorf("blob %s of a forgotten result survives", h)
		}
	}
	if _, err := pruneImages(root, ImagePruneOptions{OlderThan: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if !exists(root, newM) {
		t.Error("until=1h removed a result recorded just now")
	}
	if _, err := pruneImages(root, ImagePruneOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	if n := DirSize(filepath.Join(root, "images")); n != 0 {
		t.Errorf("image store holds %d bytes after pruning all", n)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"512": 512, "4MB": 4 << 20, "10GiB": 10 << 30, " 1kb ": 1024} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1MB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestDefaultMaxUsed(t *testing.T) {
	t.Parallel()
	n := defaultMaxUsed(t.TempDir())
	if n < minDefaultMaxUsed || n > maxDefaultMaxUsed {
		t.Errorf("DefaultMaxUsed = %d, want within [%d, %d]", n, int64(minDefaultMaxUsed), int64(maxDefaultMaxUsed))
	}
}
