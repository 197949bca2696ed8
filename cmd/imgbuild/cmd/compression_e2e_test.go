package cmd

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const compressionDockerfile = `ARG BASE
FROM ${BASE}
COPY app.txt /app.txt
RUN echo "compressed by RUN" > /run.txt
`

// compressionContext has a file that compresses well, so that compression
// levels give different layers.
func compressionContext(t *testing.T) string {
	return writeContext(t, map[string]string{
		"Dockerfile": compressionDockerfile,
		"app.txt":    strings.Repeat("imgbuild layer compression test line\n", 4096),
	})
}

// magic are the first bytes of each layer media type's blob.
var magic = map[types.MediaType][]byte{
	types.OCILayer:     {0x1f, 0x8b},
	types.OCILayerZStd: {0x28, 0xb5, 0x2f, 0xfd},
}

// pullLayers pulls ref and checks every layer by hand, since ggcr's
// validate.Image reads every layer as gzip: each blob starts with its media
// type's magic bytes and decompresses to the config's diff ID. It returns
// the layers' media types, digests and files.
func pullLayers(t *testing.T, ref string) ([]types.MediaType, []v1.Hash, []map[string]string) {
	t.Helper()
	img := pull(t, ref, validate.Fast)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		t.Fatalf("%d layers, %d diff IDs", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	var mts []types.MediaType
	var digests []v1.Hash
	for i, desc := range m.Layers {
		mts = append(mts, desc.MediaType)
		digests = append(digests, desc.Digest)
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed() // remote verifies the digest
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		_, err = io.ReadFull(rc, head)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if want, ok := magic[desc.MediaType]; !ok || !bytes.HasPrefix(head, want) {
			t.Errorf("layer %d: %s blob starts with %x", i, desc.MediaType, head)
		}
		ur, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, ur); err != nil {
			t.Fatalf("layer %d: decompressing: %v", i, err)
		}
		ur.Close()
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != cfg.RootFS.DiffIDs[i].String() {
			t.Errorf("layer %d: uncompressed digest %s, config diff ID %s", i, got, cfg.RootFS.DiffIDs[i])
		}
	}
	return mts, digests, layerFiles(t, img)
}

// baseLayer is the busybox base image's one layer.
func baseLayer(t *testing.T, e e2e) v1.Hash {
	t.Helper()
	_, d, _ := pullLayers(t, e.base)
	return d[0]
}

func checkCompressionFiles(t *testing.T, files []map[string]string) {
	t.Helper()
	if len(files) != 3 {
		t.Fatalf("%d layers, want 3", len(files))
	}
	if files[0]["bin/busybox"] == "" {
		t.Errorf("base layer lacks bin/busybox")
	}
	if want := strings.Repeat("imgbuild layer compression test line\n", 4096); files[1]["app.txt"] != want {
		t.Errorf("COPY layer app.txt has %d bytes, want %d", len(files[1]["app.txt"]), len(want))
	}
	if files[2]["run.txt"] != "compressed by RUN\n" {
		t.Errorf("RUN layer run.txt = %q", files[2]["run.txt"])
	}
}

func TestCompressionZstdPush(t *testing.T) {
	t.Parallel()
	e := setup(t)
	base := baseLayer(t, e)
	dir := compressionContext(t)
	root := t.TempDir()

	tag := e.registry + "/e2e/compression-zstd:v1"
	if r := e.build(t, root, "-t", tag, "--push", "--compression", "zstd", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	mts, digests, files := pullLayers(t, tag)
	checkCompressionFiles(t, files)
	if want := []types.MediaType{types.OCILayer, types.OCILayerZStd, types.OCILayerZStd}; fmt.Sprint(mts) != fmt.Sprint(want) {
		t.Errorf("layer media types %v, want %v", mts, want)
	}
	if digests[0] != base {
		t.Errorf("base layer %s, want the base image's gzip layer %s unchanged", digests[0], base)
	}

	// --force-compression recompresses the base layer too; the new
	// layers come from the cache as they are.
	forced := e.registry + "/e2e/compression-zstd:forced"
	r := e.build(t, root, "-t", forced, "--push", "--compression", "zstd", "--compression-level", "9", "--force-compression", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	mts, fdigests, files := pullLayers(t, forced)
	checkCompressionFiles(t, files)
	if want := []types.MediaType{types.OCILayerZStd, types.OCILayerZStd, types.OCILayerZStd}; fmt.Sprint(mts) != fmt.Sprint(want) {
		t.Errorf("forced: layer media types %v, want %v", mts, want)
	}
	if fdigests[0] == base {
		t.Errorf("forced: base layer still the gzip blob %s", base)
	}
	if fdigests[2] != digests[2] {
		t.Errorf("forced: RUN layer %s, want the cached zstd blob %s", fdigests[2], digests[2])
	}
}

func TestCompressionGzipLevel(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := compressionContext(t)

	def := e.registry + "/e2e/compression-gzip:default"
	if r := e.build(t, t.TempDir(), "-t", def, "--push", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	fast := e.registry + "/e2e/compression-gzip:level1"
	if r := e.build(t, t.TempDir(), "-t", fast, "--push", "--compression", "gzip", "--compression-level", "1", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	img := pull(t, fast) // ggcr's full validation: gzip layers
	checkCompressionFiles(t, layerFiles(t, img))
	mts, digests, _ := pullLayers(t, fast)
	for i, mt := range mts {
		if mt != types.OCILayer {
			t.Errorf("layer %d: %s, want %s", i, mt, types.OCILayer)
		}
	}
	_, defDigests, _ := pullLayers(t, def)
	if digests[1] == defDigests[1] {
		t.Errorf("COPY layer %s is the same at level 1 and the default level", digests[1])
	}
}

func TestExecutorCompressionZstd(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := compressionContext(t)
	dest := e.registry + "/e2e/executor-zstd:v1"
	r := e.executor(t, "", "--context", "dir://"+dir, "--destination", dest, "--compression", "zstd", "--compression-level", "3")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	mts, digests, files := pullLayers(t, dest)
	checkCompressionFiles(t, files)
	if want := []types.MediaType{types.OCILayer, types.OCILayerZStd, types.OCILayerZStd}; fmt.Sprint(mts) != fmt.Sprint(want) {
		t.Errorf("layer media types %v, want %v", mts, want)
	}
	if base := baseLayer(t, e); digests[0] != base {
		t.Errorf("base layer %s, want the base image's gzip layer %s unchanged", digests[0], base)
	}
}

// TestCompressionBadValues checks that bad compression flags fail before
// the build starts: a message naming the flag, a non-zero exit, no state
// dir and nothing pushed.
func TestCompressionBadValues(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := compressionContext(t)
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--compression", "lz4"}, `--compression: unsupported layer compression "lz4" (want gzip, zstd, estargz or uncompressed)`},
		{[]string{"build", "--compression-level", "abc"}, `invalid argument "abc" for "--compression-level" flag`},
		{[]string{"build", "--compression-level", "10"}, "--compression-level: invalid compression level 10 for gzip (want 0 to 9)"},
		{[]string{"build", "--compression", "zstd", "--compression-level", "23"}, "--compression-level: invalid compression level 23 for zstd (want 0 to 22)"},
		{[]string{"build", "--compression", "uncompressed", "--compression-level", "1"}, "--compression-level: invalid compression level: uncompressed layers have no level"},
		{[]string{"executor", "--compression", "lz4"}, `invalid argument "lz4" for "--compression" flag: want gzip or zstd`},
		{[]string{"executor", "--compression-level", "12"}, "--compression-level: invalid compression level 12 for gzip (want 0 to 9)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			tag := fmt.Sprintf("%s/e2e/compression-bad:%d", e.registry, i)
			args := append([]string{tc.args[0], "--root", root, "--runc", e.runc, "--build-arg", "BASE=" + e.base}, tc.args[1:]...)
			if tc.args[0] == "build" {
				args = append(args, "-t", tag, "--push", dir)
			} else {
				args = append(args, "--context", "dir://"+dir, "--destination", tag)
			}
			r := imgbuild(t, "", args...)
			if r.code == 0 {
				t.Fatal("succeeded, want failure")
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q", tc.want)
			}
			if _, err := os.Stat(root); err == nil {
				t.Errorf("state dir %s created: the flags were checked too late", root)
			}
			ref, err := name.ParseReference(tag)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Head(ref); err == nil {
				t.Errorf("%s was pushed", tag)
			}
		})
	}
}

// TestCompressionEstargz checks that eStargz layers reach the registry as
// gzip layers that keep their TOC annotations in the manifest.
func TestCompressionEstargz(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := compressionContext(t)
	tag := e.registry + "/e2e/compression-estargz:v1"
	if r := e.build(t, t.TempDir(), "-t", tag, "--push", "--compression", "estargz", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	img := pull(t, tag) // eStargz is gzip: ggcr's full validation applies
	checkCompressionFiles(t, layerFiles(t, img))
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range m.Layers {
		if l.MediaType != types.OCILayer {
			t.Errorf("layer %d: %s, want %s", i, l.MediaType, types.OCILayer)
		}
		_, toc := l.Annotations["containerd.io/snapshot/stargz/toc.digest"]
		if want := i > 0; toc != want {
			t.Errorf("layer %d: TOC digest annotation present %t, want %t", i, toc, want)
		}
	}
}

// compressionBuild is one build in a sequence on one state dir: the flags,
// and the layer media types the pushed image must have.
type compressionBuild struct {
	args []string
	want []types.MediaType
}

var (
	gzipLayers    = []types.MediaType{types.OCILayer, types.OCILayer, types.OCILayer}
	zstdOwnLayers = []types.MediaType{types.OCILayer, types.OCILayerZStd, types.OCILayerZStd}
)

// buildCompressed runs one build of compressionContext on root, pushes it
// to tag and checks the pushed layers: media types, that each blob
// decompresses with its media type's algorithm to the config's diff ID,
// and the base layer pushed as the base image has it. It returns the image
// digest, the manifest and the build's log.
func buildCompressed(t *testing.T, e e2e, root, dir, tag string, b compressionBuild, extra ...string) (string, *v1.Manifest, string) {
	t.Helper()
	args := append(append([]string{"--log-level", "debug", "-t", tag, "--push"}, b.args...), extra...)
	r := e.build(t, root, append(args, dir)...)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	what := strings.Join(b.args, " ")
	if what == "" {
		what = "default build"
	}
	mts, digests, files := pullLayers(t, tag)
	checkCompressionFiles(t, files)
	if fmt.Sprint(mts) != fmt.Sprint(b.want) {
		t.Errorf("%s: layer media types %v, want %v", what, mts, b.want)
	}
	if base := baseLayer(t, e); digests[0] != base {
		t.Errorf("%s: base layer %s, want the base image's %s as it came", what, digests[0], base)
	}
	m, err := pull(t, tag, validate.Fast).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(r.stdout), m, r.stderr
}

// converted is what BuildKit logs at debug level when it converts a layer
// blob to another compression.
const converted = "converting blob to the target compression"

// assertCachedRebuild checks that a build repeated the previous build of
// its kind from the cache: every step CACHED, the same image digest, and no
// layer converted again.
func assertCachedRebuild(t *testing.T, log, digest, wantDigest string) {
	t.Helper()
	for _, step := range []string{"COPY app.txt", "RUN echo"} {
		if !stepCached(t, log, step) {
			t.Errorf("step %q was not cached:\n%s", step, log)
		}
	}
	if digest != wantDigest {
		t.Errorf("image %s, want %s as the previous build of this kind", digest, wantDigest)
	}
	if strings.Contains(log, converted) {
		t.Errorf("the repeated build converted layers again:\n%s", log)
	}
}

// TestCompressionAfterZstdBuild checks that what an earlier build on the
// state dir chose does not decide the compression: after a zstd build, a
// default build and an explicit gzip build push gzip layers (and the docker
// archive holds gzip layers), and zstd again comes from the cache.
func TestCompressionAfterZstdBuild(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := compressionContext(t)
	root := t.TempDir()
	repo := e.registry + "/e2e/compression-after-zstd"

	zstd := compressionBuild{[]string{"--compression", "zstd"}, zstdOwnLayers}
	zstdDigest, _, _ := buildCompressed(t, e, root, dir, repo+":zstd", compressionBuild{append([]string{"--no-cache"}, zstd.args...), zstd.want})

	archive := filepath.Join(t.TempDir(), "docker.tar")
	defDigest, _, log := buildCompressed(t, e, root, dir, repo+":default", compressionBuild{nil, gzipLayers}, "-o", "type=docker,dest="+archive)
	checkArchiveGzip(t, archive)
	if !strings.Contains(log, converted) {
		t.Errorf("the default build logged no conversion of the zstd layers:\n%s", log)
	}

	gzipDigest, _, log := buildCompressed(t, e, root, dir, repo+":gzip", compressionBuild{[]string{"--compression", "gzip"}, gzipLayers})
	assertCachedRebuild(t, log, gzipDigest, defDigest)

	digest, _, log := buildCompressed(t, e, root, dir, repo+":zstd-again", zstd)
	assertCachedRebuild(t, log, digest, zstdDigest)
}

// checkArchiveGzip checks that every layer in the docker archive at path is
// a gzip stream.
func checkArchiveGzip(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	heads := map[string][]byte{}
	var manifest []struct{ Layers []string }
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				t.Fatal(err)
			}
			continue
		}
		head := make([]byte, 4)
		n, _ := io.ReadFull(tr, head)
		heads[h.Name] = head[:n]
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 3 {
		t.Fatalf("docker archive manifest.json %+v, want one image of 3 layers", manifest)
	}
	for i, l := range manifest[0].Layers {
		if !bytes.HasPrefix(heads[l], magic[types.OCILayer]) {
			t.Errorf("docker archive layer %d (%s) starts with %x, want gzip", i, l, heads[l])
		}
	}
}

// TestCompressionAfterGzipBuild checks that layers a gzip build left in the
// cache are pushed in the compression asked for: zstd and eStargz own
// layers over the gzip base layer, and zstd again from the cache.
func TestCompressionAfterGzipBuild(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := compressionContext(t)
	root := t.TempDir()
	repo := e.registry + "/e2e/compression-after-gzip"

	buildCompressed(t, e, root, dir, repo+":gzip", compressionBuild{nil, gzipLayers})

	zstd := compressionBuild{[]string{"--compression", "zstd"}, zstdOwnLayers}
	zstdDigest, _, log := buildCompressed(t, e, root, dir, repo+":zstd", zstd)
	if !strings.Contains(log, converted) {
		t.Errorf("the zstd build logged no conversion of the gzip layers:\n%s", log)
	}

	_, m, _ := buildCompressed(t, e, root, dir, repo+":estargz", compressionBuild{[]string{"--compression", "estargz"}, gzipLayers})
	for i, l := range m.Layers {
		_, toc := l.Annotations["containerd.io/snapshot/stargz/toc.digest"]
		if want := i > 0; toc != want {
			t.Errorf("estargz layer %d: TOC digest annotation present %t, want %t", i, toc, want)
		}
	}

	digest, _, log := buildCompressed(t, e, root, dir, repo+":zstd-again", zstd)
	assertCachedRebuild(t, log, digest, zstdDigest)
}
