package builder

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/imgbuild/imgbuild/internal/testutil"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// TestNewBuildInProcess is the library's smoke test: New and Build in this
// process, as a caller of the package uses them, with no registry: a FROM
// scratch image with a COPY and a label, read back from the state dir.
func TestNewBuildInProcess(t *testing.T) {
	testutil.RequireRoot(t)
	_, file, _, _ := runtime.Caller(0)
	runc := filepath.Join(filepath.Dir(file), "..", "..", "bin", "runc")
	_, err := os.Stat(runc)
	testutil.Require(t, err == nil, "no %s: run `make runc`", runc)

	// New points the process's TMPDIR into the state dir (see useTempDir);
	// the tests after this one need theirs back.
	t.Setenv("TMPDIR", os.TempDir())
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := New(t.Context(), statedir.At(t.TempDir()), WithRunc(runc), WithGC(statedir.GCConfig{Disabled: true}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(t.Context(), Request{
		ContextDir: ctxDir,
		Dockerfile: []byte("FROM scratch\nCOPY hello.txt /hello.txt\n"),
		Labels:     map[string]string{"org.example.smoke": "yes"},
		Progress:   "quiet",
	})
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := res.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Labels["org.example.smoke"] != "yes" {
		t.Errorf("labels %v, want org.example.smoke=yes", cfg.Config.Labels)
	}
	if name, _ := res.Image.ConfigName(); name != res.ConfigDigest {
		t.Errorf("config digest %s, result says %s", name, res.ConfigDigest)
	}
	layers, err := res.Image.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatal("hello.txt is not in the layer")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "hello.txt" {
			data, _ := io.ReadAll(tr)
			if !bytes.Equal(data, []byte("hello\n")) || h.Mode&0o777 != 0o644 {
				t.Errorf("hello.txt is %q, mode %o", data, h.Mode)
			}
			return
		}
	}
}
