package builder

import (
	"context"
	gofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/tonistiigi/fsutil"
)

func TestBuildContextReadFile(t *testing.T) {
	base := t.TempDir()
	ctx, out := filepath.Join(base, "ctx"), filepath.Join(base, "out")
	for _, d := range []string{ctx + "/sub", out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{ctx + "/file": "in", out + "/file": "out"} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		ctx + "/rel":       "sub/../file",
		ctx + "/abs":       ctx + "/file",
		ctx + "/up":        "../out/file",
		ctx + "/host":      out + "/file",
		ctx + "/dangling":  "missing",
		ctx + "/outdir":    out,
		out + "/in":        ctx + "/file",
		out + "/elsewhere": out + "/file",
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(ctx+"/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want, err string
		missing, linked bool
	}{
		{path: ctx + "/file", want: "in"},
		{path: ctx + "/rel", want: "in", linked: true},
		{path: ctx + "/abs", want: "in", linked: true},
		{path: ctx + "/none", missing: true},
		{path: ctx + "/up", err: ctx + "/up is a symlink to ../out/file (" + out + "/file), outside the build context " + ctx},
		{path: ctx + "/host", err: ctx + "/host is a symlink to " + out + "/file, outside the build context " + ctx},
		{path: ctx + "/dangling", err: ctx + "/dangling is a symlink to missing, which does not exist"},
		{path: ctx + "/outdir/file", err: ctx + "/outdir/file is reached through a symlinked directory, at " + out + "/file, outside the build context " + ctx},
		{path: ctx + "/fifo", err: ctx + "/fifo is not a regular file"},
		// Files the user names outside the context are followed.
		{path: out + "/in", want: "in", linked: true},
		{path: out + "/elsewhere", want: "out", linked: true},
	} {
		t.Run(strings.TrimPrefix(tc.path, base), func(t *testing.T) {
			c, err := newBuildContext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			data, ok, err := c.readFile(tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok == tc.missing || string(data) != tc.want || c.linked != tc.linked {
				t.Errorf("readFile = %q, %v, linked %v; want %q, %v, linked %v", data, ok, c.linked, tc.want, !tc.missing, tc.linked)
			}
		})
	}
}

func TestBuildContextReadIgnore(t *testing.T) {
	ctx := t.TempDir()
	df := filepath.Join(ctx, "app.Dockerfile")
	write := func(p, c string) {
		if err := os.WriteFile(filepath.Join(ctx, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".dockerignore", "*.log\n")
	c, _ := newBuildContext(ctx)
	if err := c.readIgnore(df); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"*.log"}, c.excludes); diff != "" || c.ignoreName != filepath.Join(ctx, ".dockerignore") {
		t.Errorf("context's .dockerignore: %s (-want +got):\n%s", c.ignoreName, diff)
	}

	// <Dockerfile>.dockerignore comes first, as in BuildKit.
	write("app.Dockerfile.dockerignore", "secret*\n")
	c, _ = newBuildContext(ctx)
	if err := c.readIgnore(df); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"secret*"}, c.excludes); diff != "" || c.ignoreName != df+".dockerignore" {
		t.Errorf("Dockerfile's ignore file: %s (-want +got):\n%s", c.ignoreName, diff)
	}

	// Not for a Dockerfile from stdin.
	c, _ = newBuildContext(ctx)
	if err := c.readIgnore(""); err != nil {
		t.Fatal(err)
	}
	if c.ignoreName != filepath.Join(ctx, ".dockerignore") {
		t.Errorf("stdin Dockerfile read %s", c.ignoreName)
	}
}

func TestSkipSockets(t *testing.T) {
	ctx := t.TempDir()
	for _, d := range []string{"run", "tmp"} {
		if err := os.Mkdir(filepath.Join(ctx, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ctx, "run", "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"run/app.sock", "tmp/ignored.sock"} {
		if err := syscall.Mknod(filepath.Join(ctx, s), syscall.S_IFSOCK|0o644, 0); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newBuildContext(ctx)
	c.excludes = []string{"tmp/*.sock"}
	inner, err := fsutil.NewFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	fs := c.skipSockets(inner, log)
	for range 2 {
		var got []string
		if err := fs.Walk(context.Background(), "", func(p string, _ gofs.DirEntry, err error) error {
			got = append(got, p)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"run", "run/keep", "tmp"}, got); diff != "" {
			t.Errorf("walk (-want +got):\n%s", diff)
		}
	}
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	want := []string{"skipping socket " + filepath.Join(ctx, "run/app.sock") + " in the build context: a socket cannot be copied into an image"}
	if diff := cmp.Diff(want, warnings); diff != "" {
		t.Errorf("warnings, once per socket not ignored (-want +got):\n%s", diff)
	}
}

func TestWarnOptionalDevices(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	df := "FROM a\nRUN --device=vendor.example/gpu=all true\nRUN --device=name=x.example/y=1,required true\n" +
		"FROM b\nRUN --device=x.example/z=2,required=false \\\n  true\n"
	warnOptionalDevices(log, "ci/Dockerfile", []byte(df))
	var got []string
	for _, e := range hook.AllEntries() {
		got = append(got, e.Message)
	}
	want := []string{
		"ci/Dockerfile:2: RUN --device=vendor.example/gpu=all runs without the device: imgbuild has no CDI device support (add required=true to fail instead)",
		"ci/Dockerfile:5: RUN --device=x.example/z=2 runs without the device: imgbuild has no CDI device support (add required=true to fail instead)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}
