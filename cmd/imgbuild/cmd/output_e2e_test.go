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
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestBuildOutputs writes the oci, tar and docker outputs of one build and
// checks each with go-containerregistry's validate.
func TestBuildOutputs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo out > /out.txt\n"})
	outDir := t.TempDir()
	ociDir := filepath.Join(outDir, "layout")
	ociTar := filepath.Join(outDir, "oci.tar")
	dockerTar := filepath.Join(outDir, "docker.tar")
	r := e.build(t, t.TempDir(), "-t", "example.com/app:v1",
		"-o", "type=oci,dest="+ociDir, "-o", "type=tar,dest="+ociTar, "-o", "type=docker,dest="+dockerTar, dir)
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
		"-t", "imgbuild:test", "-o", "type=oci,dest="+ociDir, e.repo)
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
