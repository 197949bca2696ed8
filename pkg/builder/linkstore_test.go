package builder

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestLinkingStore(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	held := []byte("a layer the worker already has")
	hd := digest.FromBytes(held)
	p := filepath.Join(from, "blobs", "sha256", hd.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, held, 0o444); err != nil {
		t.Fatal(err)
	}
	ls, err := local.NewStore(to)
	if err != nil {
		t.Fatal(err)
	}
	s := &linkingStore{Store: ls, from: from, to: to}

	desc := ocispecs.Descriptor{Digest: hd, Size: int64(len(held))}
	if _, err := s.Writer(t.Context(), content.WithRef("held"), content.WithDescriptor(desc)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Writer for a blob the worker holds: got %v, want already exists", err)
	}
	fi, err := os.Stat(filepath.Join(to, "blobs", "sha256", hd.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 2 {
		t.Errorf("link count %d, want 2 (a hard link, not a copy)", n)
	}

	other := []byte("a manifest only the exporter has")
	od := ocispecs.Descriptor{Digest: digest.FromBytes(other), Size: int64(len(other))}
	if err := content.WriteBlob(t.Context(), s, "other", bytes.NewReader(other), od); err != nil {
		t.Fatalf("writing a new blob: %v", err)
	}
	if _, err := os.Stat(filepath.Join(to, "blobs", "sha256", od.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
}
