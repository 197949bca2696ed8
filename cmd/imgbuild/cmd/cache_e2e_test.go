package cmd

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// cacheDockerfile has a COPY and two RUN steps whose output differs on every
// run (a nanosecond timestamp): the same layers prove no RUN ran.
const cacheDockerfile = `ARG BASE
FROM ${BASE}
COPY in.txt /in.txt
RUN echo "step one $(date +%s%N)" > /one.txt
RUN cat /in.txt /one.txt > /two.txt && date +%s%N >> /two.txt
`

// layerDigests lists the layers of the image at ref.
func layerDigests(t *testing.T, ref string) []v1.Hash {
	t.Helper()
	m, err := pull(t, ref).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// assertRebuiltFromCache builds dir on a fresh state dir with args, pushes it
// to ref and fails unless no step ran: the layers are those of want, and
// every step but the last is CACHED in the plain progress log. (BuildKit
// shows the last step pulling its layer from a remote cache rather than
// CACHED, so the layers are the proof there.)
func assertRebuiltFromCache(t *testing.T, e e2e, dir, ref, want string, args ...string) {
	t.Helper()
	r := e.build(t, t.TempDir(), append(append([]string{"-t", ref, "--push"}, args...), dir)...)
	if r.code != 0 {
		t.Fatalf("build failed:\n%s", r.stderr)
	}
	if got, w := layerDigests(t, ref), layerDigests(t, want); !slices.Equal(got, w) {
		t.Errorf("layers %v, want %v: a step ran again:\n%s", got, w, r.stderr)
	}
	for _, step := range []string{"COPY in.txt", `RUN echo "step one`} {
		if !stepCached(t, r.stderr, step) {
			t.Errorf("step %q was not cached:\n%s", step, r.stderr)
		}
	}
}

// TestCacheRegistryFreshRunner checks that a runner with an empty state dir
// rebuilds an unchanged Dockerfile entirely from a registry cache, in the
// OCI image-manifest format, with several --cache-from given at once.
func TestCacheRegistryFreshRunner(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "in.txt": "input\n"})
	cacheRef := e.registry + "/e2e/cache:buildcache"
	img := e.registry + "/e2e/cached-app:v1"
	if r := e.build(t, t.TempDir(), "-t", img, "--push", "--cache-to", "type=registry,ref="+cacheRef+",mode=max", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// The cache is an OCI image manifest (not an index), which ECR accepts.
	cr, err := name.ParseReference(cacheRef)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(cr)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("cache manifest media type = %q, want an OCI image manifest", desc.MediaType)
	}

	assertRebuiltFromCache(t, e, dir, e.registry+"/e2e/cached-app:v2", img,
		"--cache-from", "type=registry,ref="+e.registry+"/e2e/cache:missing",
		"--cache-from", "type=registry,ref="+cacheRef)
}

// TestCacheLocalAndInline checks type=local export/import across state dirs
// and type=inline export imported through the pushed image.
func TestCacheLocalAndInline(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "in.txt": "local\n"})
	cacheDir := t.TempDir()
	img := e.registry + "/e2e/inline-app:v1"
	r := e.build(t, t.TempDir(), "-t", img, "--push",
		"--cache-to", "type=local,dest="+cacheDir+",mode=max", "--cache-to", "type=inline", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	t.Run("local", func(t *testing.T) {
		assertRebuiltFromCache(t, e, dir, e.registry+"/e2e/inline-app:local", img, "--cache-from", "type=local,src="+cacheDir)
	})
	t.Run("inline", func(t *testing.T) {
		assertRebuiltFromCache(t, e, dir, e.registry+"/e2e/inline-app:inline", img, "--cache-from", img)
	})
}

// TestCacheFlagErrors checks that bad cache flags fail before any build.
func TestCacheFlagErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n"})
	for _, args := range [][]string{
		{"--cache-to", "type=registry"},
		{"--cache-from", "type=inline"},
		{"--cache-to", "type=local,dest=/x,mode=everything"},
	} {
		r := e.build(t, t.TempDir(), append(args, dir)...)
		if r.code == 0 || !strings.Contains(r.stderr, args[0]) {
			t.Errorf("%v: exit %d, stderr %q; want a failure naming the flag", args, r.code, r.stderr)
		}
	}
}

// TestCacheMountsAcrossStateDirs checks that RUN --mount=type=cache contents
// saved by one state dir (--cache-mounts-to) seed another, empty one
// (--cache-mounts-from), as on ephemeral CI runners.
func TestCacheMountsAcrossStateDirs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	saved := t.TempDir()
	first := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
RUN --mount=type=cache,target=/cache,id=deps echo "downloaded once" > /cache/stamp && mkdir -p /cache/sub && echo nested > /cache/sub/file
RUN --mount=type=cache,target=/root/.cache echo "by target" > /root/.cache/t
`})
	if r := e.build(t, t.TempDir(), "--cache-mounts-to", saved, first); r.code != 0 {
		t.Fatal(r.stderr)
	}
	second := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
RUN --mount=type=cache,target=/c,id=deps cat /c/stamp /c/sub/file > /seen
RUN --mount=type=cache,target=/root/.cache cp /root/.cache/t /seen-target
`})
	ref := e.registry + "/e2e/cachemounts:v1"
	fresh := t.TempDir()
	if r := e.build(t, fresh, "--cache-mounts-from", saved, "-t", ref, "--push", second); r.code != 0 {
		t.Fatal(r.stderr)
	}
	fs := files(t, pull(t, ref))
	if fs["seen"] != "downloaded once\nnested\n" || fs["seen-target"] != "by target\n" {
		t.Errorf("fresh state dir saw %q and %q in its cache mounts", fs["seen"], fs["seen-target"])
	}
	// Importing again into a state dir that has the mounts keeps its own.
	if r := e.build(t, fresh, "--cache-mounts-from", saved, second); r.code != 0 {
		t.Fatal(r.stderr)
	}
}
