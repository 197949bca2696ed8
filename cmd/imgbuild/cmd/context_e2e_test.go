package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestBuildContextSymlinks checks the files the frontend reads before the
// build (the Dockerfile, .dockerignore, <Dockerfile>.dockerignore) when they
// are symlinks: a link that stays in the context is followed and honoured,
// one that leaves it fails the build naming the link and its target, with
// nothing pushed. Both for build and for executor.
func TestBuildContextSymlinks(t *testing.T) {
	t.Parallel()
	e := setup(t)
	root := t.TempDir()
	const dockerfile = "ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\n"
	for _, tc := range []struct {
		name     string
		links    map[string]string // path in the context → link target; $CTX and $OUT are expanded
		args     []string          // before the context; $CTX is expanded
		executor bool
		want     []string // error text; none means the build succeeds
	}{{
		name:  "dockerignore outside",
		links: map[string]string{".dockerignore": "$OUT/ignore"},
		want:  []string{"$CTX/.dockerignore", "symlink to $OUT/ignore", "outside the build context $CTX"},
	}, {
		name:  "dockerignore outside relative",
		links: map[string]string{".dockerignore": "../out/ignore"},
		want:  []string{"$CTX/.dockerignore", "symlink to ../out/ignore ($OUT/ignore)", "outside the build context $CTX"},
	}, {
		name:  "dockerignore dangling",
		links: map[string]string{".dockerignore": "rules/missing"},
		want:  []string{"$CTX/.dockerignore", "symlink to rules/missing", "does not exist"},
	}, {
		name:  "dockerignore inside",
		links: map[string]string{".dockerignore": "rules/ignore"},
	}, {
		name:  "dockerignore inside absolute",
		links: map[string]string{".dockerignore": "$CTX/rules/ignore"},
	}, {
		name:  "Dockerfile.dockerignore outside",
		links: map[string]string{"sub/app.Dockerfile.dockerignore": "$OUT/ignore"},
		args:  []string{"-f", "$CTX/sub/app.Dockerfile"},
		want:  []string{"$CTX/sub/app.Dockerfile.dockerignore", "symlink to $OUT/ignore", "outside the build context $CTX"},
	}, {
		name:  "Dockerfile.dockerignore inside",
		links: map[string]string{"sub/app.Dockerfile.dockerignore": "../rules/ignore"},
		args:  []string{"-f", "$CTX/sub/app.Dockerfile"},
	}, {
		name:  "Dockerfile outside",
		links: map[string]string{"Dockerfile": "$OUT/Dockerfile"},
		want:  []string{"$CTX/Dockerfile", "symlink to $OUT/Dockerfile", "outside the build context $CTX"},
	}, {
		name:  "Dockerfile outside through -f",
		links: map[string]string{"sub/Dockerfile": "../../out/Dockerfile"},
		args:  []string{"-f", "$CTX/sub/Dockerfile"},
		want:  []string{"$CTX/sub/Dockerfile", "symlink to ../../out/Dockerfile ($OUT/Dockerfile)", "outside the build context $CTX"},
	}, {
		name:  "Dockerfile inside absolute",
		links: map[string]string{"Dockerfile": "$CTX/docker/Dockerfile.real"},
	}, {
		name:  "Dockerfile inside through -f",
		links: map[string]string{"sub/Dockerfile": "../docker/Dockerfile.real"},
		args:  []string{"-f", "$CTX/sub/Dockerfile"},
	}, {
		name:     "executor Dockerfile outside",
		links:    map[string]string{"Dockerfile": "$OUT/Dockerfile"},
		args:     []string{"--dockerfile", "Dockerfile"},
		executor: true,
		want:     []string{"$CTX/Dockerfile", "symlink to $OUT/Dockerfile", "outside the build context $CTX"},
	}, {
		name:     "executor dockerignore outside",
		links:    map[string]string{".dockerignore": "$OUT/ignore"},
		executor: true,
		want:     []string{"$CTX/.dockerignore", "symlink to $OUT/ignore", "outside the build context $CTX"},
	}, {
		name:     "executor Dockerfile inside",
		links:    map[string]string{"sub/Dockerfile": "../docker/Dockerfile.real"},
		args:     []string{"--dockerfile", "sub/Dockerfile"},
		executor: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			ctx, out := filepath.Join(base, "ctx"), filepath.Join(base, "out")
			expand := strings.NewReplacer("$CTX", ctx, "$OUT", out).Replace
			for dir, files := range map[string]map[string]string{
				ctx: {
					"keep.txt":               "keep\n",
					"secret.txt":             "s3cret\n",
					"rules/ignore":           "secret*\n",
					"docker/Dockerfile.real": dockerfile,
				},
				out: {"ignore": "secret*\n", "Dockerfile": dockerfile},
			} {
				for p, c := range files {
					writeFile(t, filepath.Join(dir, p), c)
				}
			}
			if _, ok := tc.links["Dockerfile"]; !ok {
				writeFile(t, filepath.Join(ctx, "Dockerfile"), dockerfile)
			}
			switch {
			case tc.links["sub/app.Dockerfile.dockerignore"] != "":
				writeFile(t, filepath.Join(ctx, "sub/app.Dockerfile"), dockerfile)
				// Overridden by the Dockerfile's own ignore file.
				writeFile(t, filepath.Join(ctx, ".dockerignore"), "keep.txt\n")
			case tc.links[".dockerignore"] == "":
				writeFile(t, filepath.Join(ctx, ".dockerignore"), "secret*\n")
			}
			for p, target := range tc.links {
				full := filepath.Join(ctx, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(expand(target), full); err != nil {
					t.Fatal(err)
				}
			}
			var args []string
			for _, a := range tc.args {
				args = append(args, expand(a))
			}
			tag := fmt.Sprintf("%s/e2e/ctxlink-%s:v1", e.registry, strings.ToLower(strings.ReplaceAll(tc.name, " ", "-")))
			var r result
			if tc.executor {
				r = e.executor(t, "", append(args, "--context", "dir://"+ctx, "--destination", tag)...)
			} else {
				r = e.build(t, root, append(args, "-t", tag, "--push", ctx)...)
			}
			if len(tc.want) == 0 {
				if r.code != 0 {
					t.Fatalf("build failed:\n%s", r.stderr)
				}
				for i, layer := range layerFiles(t, pull(t, tag)) {
					for p := range layer {
						if strings.HasPrefix(filepath.Base(p), "secret") {
							t.Errorf("layer %d has %s, which the ignore file excludes", i, p)
						}
					}
				}
				if got := files(t, pull(t, tag))["ctx/keep.txt"]; got != "keep\n" {
					t.Errorf("ctx/keep.txt = %q, want the context's file", got)
				}
				return
			}
			if r.code == 0 {
				t.Fatal("build succeeded, want failure")
			}
			for _, w := range tc.want {
				if w = expand(w); !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			ref, err := name.ParseReference(tag)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Head(ref); err == nil {
				t.Errorf("%s was pushed by a failed build", tag)
			}
		})
	}
}

// TestBuildContextSocket checks that a UNIX socket in the context is left
// out with a warning naming it, as docker does, rather than copied as an
// empty regular file.
func TestBuildContextSocket(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile":   "ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\n",
		"run/keep.txt": "keep\n",
	})
	sock := filepath.Join(dir, "run", "app.sock")
	if err := syscall.Mknod(sock, syscall.S_IFSOCK|0o755, 0); err != nil {
		t.Fatal(err)
	}
	ref := e.registry + "/e2e/ctx-socket:v1"
	r := e.build(t, t.TempDir(), "-t", ref, "--push", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if !strings.Contains(r.stderr, "skipping socket "+sock) {
		t.Errorf("no warning naming %s", sock)
	}
	for i, layer := range layerFiles(t, pull(t, ref)) {
		if _, ok := layer["ctx/run/app.sock"]; ok {
			t.Errorf("layer %d has an entry for the socket", i)
		}
	}
	if got := files(t, pull(t, ref))["ctx/run/keep.txt"]; got != "keep\n" {
		t.Errorf("ctx/run/keep.txt = %q, want the context's file", got)
	}
}

// TestBuildOptionalDevice checks that RUN --device without required=true,
// which the build runs without the device, is reported with the device and
// the Dockerfile line; a required one fails the build naming it.
func TestBuildOptionalDevice(t *testing.T) {
	t.Parallel()
	e := setup(t)
	root := t.TempDir()
	dir := writeContext(t, map[string]string{
		"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN --device=vendor.example/gpu=all echo ran > /ran\n",
	})
	ref := e.registry + "/e2e/optional-device:v1"
	r := e.build(t, root, "-t", ref, "--push", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	df := filepath.Join(dir, "Dockerfile")
	for _, w := range []string{df + ":3", "vendor.example/gpu=all", "required=true"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	if got := files(t, pull(t, ref))["ran"]; got != "ran\n" {
		t.Errorf("/ran = %q, want the RUN step's output", got)
	}

	writeFile(t, df, "ARG BASE\nFROM ${BASE}\nRUN --device=vendor.example/gpu=all,required=true true\n")
	r = e.build(t, root, dir)
	if r.code == 0 || !strings.Contains(r.stderr, `"vendor.example/gpu=all" is required`) {
		t.Errorf("required device: exit %d, want a failure naming the device", r.code)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
