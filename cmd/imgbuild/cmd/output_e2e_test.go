package cmd

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestBuildOutputs writes an OCI layout, an OCI tarball and a docker
// archive in one build and checks each with go-containerregistry's validate.
func TestBuildOutputs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo out > /out.txt\n"})
	outDir := t.TempDir()
	ociDir := filepath.Join(outDir, "layout")
	ociTar := filepath.Join(outDir, "oci.tar")
	dockerTar := filepath.Join(outDir, "docker.tar")
	r := e.build(t, t.TempDir(), "-t", "example.com/app:v1",
		"-o", "type=oci,tar=false,dest="+ociDir, "-o", "type=oci,dest="+ociTar, "-o", "type=docker,dest="+dockerTar, dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	want, err := v1.NewHash(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("stdout %q: %v", r.stdout, err)
	}

	check := func(what string, img v1.Image) {
		t.Helper()
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if got := files(t, img)["out.txt"]; got != "out\n" {
			t.Errorf("%s: out.txt = %q", what, got)
		}
	}

	// OCI layout directory.
	p, err := layout.FromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(want)
	if err != nil {
		t.Fatalf("layout has no image %s: %v", want, err)
	}
	check("oci layout", img)
	idx, _ := p.ImageIndex()
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
		t.Errorf("layout index.json = %+v, want one manifest named v1", im.Manifests)
	}

	// OCI tarball: the same layout, packed.
	untarred := t.TempDir()
	untar(t, ociTar, untarred)
	p2, err := layout.FromPath(untarred)
	if err != nil {
		t.Fatal(err)
	}
	img, err = p2.Image(want)
	if err != nil {
		t.Fatalf("oci tarball has no image %s: %v", want, err)
	}
	check("oci tarball", img)

	// docker-archive, loadable by `docker load`: manifest.json with the tag.
	tag, _ := name.NewTag("example.com/app:v1")
	img, err = tarball.ImageFromPath(dockerTar, &tag)
	if err != nil {
		t.Fatalf("docker archive: %v", err)
	}
	check("docker archive", img)
	cn, _ := img.ConfigName()
	layoutImg, _ := p.Image(want)
	lcn, _ := layoutImg.ConfigName()
	if cn != lcn {
		t.Errorf("docker archive config %s != built config %s", cn, lcn)
	}
}

// TestBuildOwnImage builds the project's Dockerfile offline with imgbuild
// and checks the image carries imgbuild and runc.
func TestBuildOwnImage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, f := range []string{"bin/imgbuild", "bin/runc"} {
		if _, err := os.Stat(filepath.Join(e.repo, f)); err != nil {
			t.Fatalf("%s missing: `make build runc` first (%v)", f, err)
		}
	}
	ociDir := filepath.Join(t.TempDir(), "layout")
	r := imgbuild(t, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain",
		"-t", "imgbuild:test", "-o", "type=oci,tar=false,dest="+ociDir, e.repo)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	p, err := layout.FromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(strings.TrimSpace(r.stdout))
	img, err := p.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	fs := files(t, img)
	for _, f := range []string{"kaniko/imgbuild", "kaniko/runc", "kaniko/ssl/certs/ca-certificates.crt", "kaniko/.docker/config.json", "kaniko/.imgbuild-container", "workspace"} {
		if _, ok := fs[f]; !ok {
			t.Errorf("image lacks %s", f)
		}
	}
	if fs["kaniko/executor"] != "-> imgbuild" {
		t.Errorf("/kaniko/executor = %q, want a link to imgbuild", fs["kaniko/executor"])
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.WorkingDir != "/workspace" || !slices.Contains(cf.Config.Env, "DOCKER_CONFIG=/kaniko/.docker/") {
		t.Errorf("WorkingDir=%q Env=%q, want kaniko's /workspace and DOCKER_CONFIG", cf.Config.WorkingDir, cf.Config.Env)
	}
	for f := range fs {
		if strings.HasPrefix(f, "pkg/") || strings.HasPrefix(f, ".git") {
			t.Errorf("image holds source file %s: .dockerignore leaks", f)
		}
	}
}

func untar(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, filepath.Clean("/"+h.Name))
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		out, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
}

// TestOutputTypes runs each -o type as buildx means it, one build per
// case on one state dir, and checks what lands at dest.
func TestOutputTypes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo out > /out.txt\n"})
	root := t.TempDir()
	tag, _ := name.NewTag("example.com/app:v1")

	// ociImage checks the OCI layout in dir holds one image named v1 with
	// the RUN step's file, and returns its digest.
	ociImage := func(t *testing.T, dir string) v1.Hash {
		t.Helper()
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
			t.Fatalf("index.json = %+v, want one manifest named v1", im.Manifests)
		}
		img, err := p.Image(im.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatal(err)
		}
		if got := files(t, img)["out.txt"]; got != "out\n" {
			t.Errorf("out.txt = %q", got)
		}
		return im.Manifests[0].Digest
	}
	printed := func(t *testing.T, r result) v1.Hash {
		t.Helper()
		h, err := v1.NewHash(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("stdout %q is not a digest: %v", r.stdout, err)
		}
		return h
	}

	for _, tc := range []struct {
		name  string
		out   func(dir string) string // the -o value, dest under dir
		fail  string                  // the build fails, stderr saying this
		check func(t *testing.T, dir string, r result)
	}{{
		name: "oci tarball by default",
		out:  func(dir string) string { return "type=oci,dest=" + filepath.Join(dir, "img.tar") },
		check: func(t *testing.T, dir string, r result) {
			fi, err := os.Stat(filepath.Join(dir, "img.tar"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("img.tar: %v, want a file", err)
			}
			untarred := t.TempDir()
			untar(t, filepath.Join(dir, "img.tar"), untarred)
			if got, want := ociImage(t, untarred), printed(t, r); got != want {
				t.Errorf("tarball holds %s, build printed %s", got, want)
			}
		},
	}, {
		name: "oci tar=false is a layout directory",
		out:  func(dir string) string { return "type=oci,tar=false,dest=" + filepath.Join(dir, "layout") },
		check: func(t *testing.T, dir string, r result) {
			if got, want := ociImage(t, filepath.Join(dir, "layout")), printed(t, r); got != want {
				t.Errorf("layout holds %s, build printed %s", got, want)
			}
		},
	}, {
		name: "oci tarball to stdout",
		out:  func(string) string { return "type=oci,dest=-" },
		check: func(t *testing.T, dir string, r result) {
			f := filepath.Join(dir, "stdout.tar")
			if err := os.WriteFile(f, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			untarred := t.TempDir()
			untar(t, f, untarred)
			ociImage(t, untarred)
		},
	}, {
		name: "tar is the root filesystem",
		out:  func(dir string) string { return "type=tar,dest=" + filepath.Join(dir, "rootfs.tar") },
		check: func(t *testing.T, dir string, r result) {
			f, err := os.Open(filepath.Join(dir, "rootfs.tar"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs := tarFiles(t, f)
			if fs["out.txt"] != "out\n" {
				t.Errorf("rootfs tar: out.txt = %q", fs["out.txt"])
			}
			if _, ok := fs["bin/busybox"]; !ok {
				t.Errorf("rootfs tar lacks the base image's bin/busybox")
			}
			if _, ok := fs["index.json"]; ok {
				t.Errorf("rootfs tar is an OCI layout")
			}
		},
	}, {
		name: "local is the root filesystem in a directory",
		out:  func(dir string) string { return "type=local,dest=" + filepath.Join(dir, "rootfs") },
		check: func(t *testing.T, dir string, r result) {
			b, err := os.ReadFile(filepath.Join(dir, "rootfs", "out.txt"))
			if err != nil || string(b) != "out\n" {
				t.Errorf("rootfs/out.txt = %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "rootfs", "bin", "busybox")); err != nil {
				t.Errorf("rootfs lacks bin/busybox: %v", err)
			}
		},
	}, {
		name: "-o DIR is type=local",
		out:  func(dir string) string { return filepath.Join(dir, "short") },
		check: func(t *testing.T, dir string, r result) {
			if b, err := os.ReadFile(filepath.Join(dir, "short", "out.txt")); err != nil || string(b) != "out\n" {
				t.Errorf("short/out.txt = %q, %v", b, err)
			}
		},
	}, {
		name: "docker is loadable",
		out:  func(dir string) string { return "type=docker,dest=" + filepath.Join(dir, "docker.tar") },
		check: func(t *testing.T, dir string, r result) {
			path := filepath.Join(dir, "docker.tar")
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != 1 || !slices.Contains(m[0].RepoTags, "example.com/app:v1") {
				t.Fatalf("manifest.json = %+v, want one image tagged example.com/app:v1", m)
			}
			img, err := tarball.ImageFromPath(path, &tag)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatal(err)
			}
			if got := files(t, img)["out.txt"]; got != "out\n" {
				t.Errorf("out.txt = %q", got)
			}
		},
	}, {
		name: "missing dest directory fails before building",
		out:  func(dir string) string { return "type=oci,dest=" + filepath.Join(dir, "nope", "img.tar") },
		fail: "nope",
		check: func(t *testing.T, dir string, r result) {
			if strings.Contains(r.stderr, "RUN echo") {
				t.Errorf("the build ran before the output was checked:\n%s", r.stderr)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := e.build(t, root, "-t", tag.String(), "-o", tc.out(dir), ctxDir)
			if tc.fail != "" {
				if r.code == 0 || !strings.Contains(r.stderr, filepath.Join(dir, tc.fail)) {
					t.Fatalf("exit %d, want a failure naming %s:\n%s", r.code, filepath.Join(dir, tc.fail), r.stderr)
				}
			} else if r.code != 0 {
				t.Fatal(r.stderr)
			}
			tc.check(t, dir, r)
			// Nothing but the outputs: no temporary file is left beside them.
			ents, _ := os.ReadDir(dir)
			for _, en := range ents {
				if strings.Contains(en.Name(), ".tmp-") {
					t.Errorf("left behind: %s", en.Name())
				}
			}
		})
	}
}

// TestOutputImageNoPush builds with type=image,push=false: the result
// stays in the cache, nothing is pushed, and there is no warning.
func TestOutputImageNoPush(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo out > /out.txt\n"})
	ref := e.registry + "/e2e/output-image-nopush:v1"
	r := e.build(t, t.TempDir(), "-o", "type=image,name="+ref+",push=false", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if _, err := v1.NewHash(strings.TrimSpace(r.stdout)); err != nil {
		t.Errorf("stdout %q is not a digest: %v", r.stdout, err)
	}
	if strings.Contains(r.stderr, "No output specified") {
		t.Errorf("warned about no output for an explicit type=image:\n%s", r.stderr)
	}
	pref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(pref); err == nil {
		t.Errorf("%s was pushed by push=false", ref)
	}
}

// TestOutputFailedBuildLeavesNothing fails a RUN step with every staged
// output type asked for: nothing is left at any dest, nor beside it.
func TestOutputFailedBuildLeavesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo out > /out.txt && exit 3\n"})
	dir := t.TempDir()
	r := e.build(t, t.TempDir(), "-t", "example.com/app:v1",
		"-o", "type=oci,dest="+filepath.Join(dir, "img.tar"), "-o", "type=docker,dest="+filepath.Join(dir, "docker.tar"),
		"-o", "type=tar,dest="+filepath.Join(dir, "rootfs.tar"), "-o", "type=local,dest="+filepath.Join(dir, "rootfs"),
		"-o", "type=oci,tar=false,dest="+filepath.Join(dir, "layout"), ctxDir)
	if r.code == 0 {
		t.Fatal("build succeeded, want the RUN step to fail")
	}
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		t.Errorf("a failed build left %s", en.Name())
	}
}

// TestOutputLocalMerges writes type=local into a directory that has files
// already: buildx's local exporter keeps them and replaces same-named ones.
func TestOutputLocalMerges(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo out > /out.txt\n"})
	dest := writeContext(t, map[string]string{"keep.txt": "kept\n", "out.txt": "old\n", "etc/mine": "mine\n"})
	r := e.build(t, t.TempDir(), "-o", "type=local,dest="+dest, ctxDir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	for f, want := range map[string]string{"keep.txt": "kept\n", "out.txt": "out\n", "etc/mine": "mine\n"} {
		if b, err := os.ReadFile(filepath.Join(dest, f)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", f, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "etc", "passwd")); err != nil {
		t.Errorf("the image's etc/passwd was not merged into the existing etc: %v", err)
	}
}
