package testutil

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestHostileTar checks that the builders write what they claim: names and
// link targets as given, PAX xattrs, a truncated last entry and a sparse
// entry whose logical size is not stored.
func TestHostileTar(t *testing.T) {
	b, err := TarBytes(
		File("../../x", "a"),
		Symlink("etc", "/host"),
		Hardlink("h", "../../etc/shadow"),
		Whiteout("d", ".."),
		BlockDev("disk", 8, 0),
		WithCapability(File("capped", ""), 13),
		SparseFile("sparse", 1<<40, "data"),
		TruncatedFile("big", 1<<30, "short"),
	)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	var got []string
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, h.Name)
		switch h.Name {
		case "../../x":
		case "etc":
			if h.Linkname != "/host" {
				t.Errorf("etc -> %q", h.Linkname)
			}
		case "d/.wh...":
		case "disk":
			if h.Typeflag != tar.TypeBlock || h.Devmajor != 8 {
				t.Errorf("disk: %+v", h)
			}
		case "capped":
			if c := h.PAXRecords["SCHILY.xattr.security.capability"]; len(c) != 20 || c[4] != 0 || c[5] != 1<<5 {
				t.Errorf("capability xattr = %x", c)
			}
		case "sparse":
			if h.Size != 1<<40 {
				t.Errorf("sparse size %d, want 1 TiB", h.Size)
			}
			head := make([]byte, 4)
			if _, err := io.ReadFull(tr, head); err != nil || string(head) != "data" {
				t.Errorf("sparse data %q, %v", head, err)
			}
		case "big":
			if _, err := io.Copy(io.Discard, tr); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("reading the truncated entry: %v, want unexpected EOF", err)
			}
			return
		}
	}
}

func TestSentinel(t *testing.T) {
	for name, change := range map[string]func(s *Sentinel) error{
		"chmod":    func(s *Sentinel) error { return os.Chmod(s.Passwd, 0o644) },
		"link":     func(s *Sentinel) error { return os.Link(s.File, filepath.Join(t.TempDir(), "l")) },
		"new file": func(s *Sentinel) error { return os.WriteFile(filepath.Join(s.Dir, "sub", "pwned"), nil, 0o644) },
		"rewrite":  func(s *Sentinel) error { return os.WriteFile(s.File, []byte(s.Secret), 0o644) },
		"escape":   func(s *Sentinel) error { return os.WriteFile(s.Escape+"-x", nil, 0o644) },
	} {
		s, err := NewSentinel(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(); err != nil {
			t.Fatalf("fresh sentinel: %v", err)
		}
		if err := change(s); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(); err == nil {
			t.Errorf("%s: not noticed", name)
		}
		s.Remove()
	}
}
