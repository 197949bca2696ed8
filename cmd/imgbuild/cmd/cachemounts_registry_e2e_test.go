package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/zstd"

	"github.com/imgbuild/imgbuild/internal/testutil"
	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// warmDockerfile's cache step records whether its cache mount was warm in
// /w, "downloads" 1 MiB of dependencies when cold, and leaves in the mount a file with its own owner and mode, read
// back into /perm. The uid= mount is one BuildKit keys to the state dir.
const warmDockerfile = `ARG BASE
FROM ${BASE}
COPY dep.txt /dep.txt
RUN --mount=type=cache,target=/c (test -f /c/seen && echo warm || echo cold) > /w; cat /dep.txt >> /c/seen; \
    (test -f /c/deps || head -c 1048576 /dev/urandom > /c/deps) && \
    touch /c/owned && chown 1234:5678 /c/owned && chmod 640 /c/owned && stat -c %u:%g:%a /c/owned > /perm
RUN --mount=type=cache,id=owned,target=/o,uid=1000 touch /o/x
`

// uploaded is the blob bytes the proxy passed on.
func uploaded(p *testutil.FaultProxy) int64 {
	return p.Bytes("PATCH upload") + p.Bytes("PUT upload")
}

// cacheMountsArtifact reads the cache mounts artifact at ref and the
// uncompressed content of each layer by mount id.
func cacheMountsArtifact(t *testing.T, ref string) (*v1.Manifest, map[string]map[string]string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("reading %s: %v", ref, err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(desc.Manifest)))
	if err != nil {
		t.Fatal(err)
	}
	content := map[string]map[string]string{}
	for _, l := range m.Layers {
		rl, err := remote.Layer(r.Context().Digest(l.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rl.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zstd.NewReader(rc)
		if err != nil {
			t.Fatal(err)
		}
		content[l.Annotations[builder.AnnotationCacheMountID]] = tarFiles(t, zr)
		zr.Close()
		rc.Close()
	}
	return m, content
}

// TestCacheMountsRegistryFreshPods is the fleet case: a build pushes its
// layer cache and its cache mounts to the registry; after a change that
// invalidates the cache step, two builds on new empty state dirs (fresh
// pods) run that step and find its cache mount warm, with the owner and
// mode of the files in it.
func TestCacheMountsRegistryFreshPods(t *testing.T) {
	t.Parallel()
	e := setup(t)
	proxy := testutil.StartFaultProxy(t, e.registry)
	layers := e.registry + "/e2e/fleet-layers:1"
	mounts := proxy.Host + "/e2e/fleet-mounts:1"
	ctx := writeContext(t, map[string]string{"Dockerfile": warmDockerfile, "dep.txt": "v1\n"})
	first := e.registry + "/e2e/fleet:1"
	r := e.build(t, t.TempDir(), "--cache-to", "type=registry,ref="+layers, "--cache-mounts-to", "type=registry,ref="+mounts, "-t", first, "--push", ctx)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := files(t, pull(t, first))["w"]; got != "cold\n" {
		t.Errorf("first build: /w = %q, want cold", got)
	}
	if !strings.Contains(r.stderr, "not saving cache mounts built on another stage") || !strings.Contains(r.stderr, ": owned (target /o)") {
		t.Errorf("no warning naming the uid= mount:\n%s", r.stderr)
	}
	t.Logf("first push of cache mounts: %d blob bytes uploaded", uploaded(proxy))

	m, content := cacheMountsArtifact(t, mounts)
	if m.ArtifactType != builder.CacheMountsArtifactType || m.Config.MediaType != registry.EmptyConfigMediaType || len(m.Layers) != 1 {
		t.Fatalf("cache mounts manifest: artifactType %q, config %s, %d layers", m.ArtifactType, m.Config.MediaType, len(m.Layers))
	}
	l := m.Layers[0]
	id := l.Annotations[builder.AnnotationCacheMountID]
	if l.MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" || !strings.HasSuffix(id, "/c") ||
		l.Annotations[builder.AnnotationCacheMountTarget] != "/c" || l.Annotations[builder.AnnotationCacheMountSize] == "" {
		t.Errorf("cache mount layer %+v", l)
	}
	if content[id]["seen"] != "v1\n" {
		t.Errorf("cache mount layer holds %v", content[id])
	}

	// The change invalidates the cache step, not the base.
	if err := os.WriteFile(filepath.Join(ctx, "dep.txt"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("pods", func(t *testing.T) {
		for _, pod := range []string{"b", "c"} {
			t.Run(pod, func(t *testing.T) {
				t.Parallel()
				ref := e.registry + "/e2e/fleet:" + pod
				r := e.build(t, t.TempDir(), "--cache-from", "type=registry,ref="+layers, "--cache-mounts-from", "type=registry,ref="+mounts, "-t", ref, "--push", ctx)
				if r.code != 0 {
					t.Fatal(r.stderr)
				}
				fs := files(t, pull(t, ref))
				if fs["w"] != "warm\n" || fs["perm"] != "1234:5678:640\n" {
					t.Errorf("fresh pod %s: /w = %q, /perm = %q; want warm and 1234:5678:640", pod, fs["w"], fs["perm"])
				}
			})
		}
	})
}

// TestCacheMountsRegistryUnchangedPush pushes cache mounts, then has a
// fresh pod import them, build the same context (the cache step comes from
// the layer cache and leaves the mount as it was) and push them again: the
// second push uploads no blob bytes.
func TestCacheMountsRegistryUnchangedPush(t *testing.T) {
	t.Parallel()
	e := setup(t)
	proxy := testutil.StartFaultProxy(t, e.registry)
	layers := e.registry + "/e2e/unchanged-layers:1"
	mounts := "type=registry,ref=" + proxy.Host + "/e2e/unchanged-mounts:1"
	ctx := writeContext(t, map[string]string{"Dockerfile": warmDockerfile, "dep.txt": "v1\n"})
	if r := e.build(t, t.TempDir(), "--cache-to", "type=registry,ref="+layers, "--cache-mounts-to", mounts, ctx); r.code != 0 {
		t.Fatal(r.stderr)
	}
	first, manifests := uploaded(proxy), proxy.Count("PUT manifest")
	if first == 0 {
		t.Fatal("the first push uploaded nothing")
	}
	r := e.build(t, t.TempDir(), "--cache-from", "type=registry,ref="+layers, "--cache-mounts-from", mounts, "--cache-mounts-to", mounts, ctx)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	second := uploaded(proxy) - first
	t.Logf("cache mount blob bytes uploaded: %d by the first push, %d by the unchanged second push", first, second)
	if second != 0 {
		t.Errorf("the unchanged second push uploaded %d blob bytes, want 0", second)
	}
	if n := proxy.Count("PUT manifest") - manifests; n != 0 {
		t.Errorf("the unchanged second push put %d manifests, want 0", n)
	}
}

// TestCacheMountsRegistryConcurrentWriters has eight fresh builds finish at
// once, each pushing its own cache mount content to one ref: all succeed,
// and the ref is a whole artifact from one of them.
func TestCacheMountsRegistryConcurrentWriters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	mounts := e.registry + "/e2e/shared-mounts:1"
	ctx := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
ARG N
RUN --mount=type=cache,target=/c echo $N > /c/who && head -c 100000 /dev/urandom > /c/noise
`})
	const n = 8
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Go(func() {
			results[i] = e.build(t, t.TempDir(), "--build-arg", fmt.Sprint("N=", i), "--cache-mounts-to", "type=registry,ref="+mounts, ctx)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("build %d: exit %d\n%s", i, r.code, r.stderr)
		}
	}
	m, content := cacheMountsArtifact(t, mounts)
	if m.ArtifactType != builder.CacheMountsArtifactType || len(m.Layers) != 1 {
		t.Fatalf("the ref serves artifactType %q with %d layers", m.ArtifactType, len(m.Layers))
	}
	for _, files := range content {
		who := strings.TrimSpace(files["who"])
		if len(files["noise"]) != 100000 || who < "0" || who > "7" || len(who) != 1 {
			t.Errorf("the ref's cache mount holds who=%q and %d noise bytes", who, len(files["noise"]))
		}
	}
}

// TestCacheMountsRegistryBadRef: a bad reference fails before the build,
// naming the flag, instead of becoming a directory named after it.
func TestCacheMountsRegistryBadRef(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	wd := t.TempDir()
	t.Chdir(wd)
	for _, flag := range []string{"--cache-mounts-to", "--cache-mounts-from"} {
		r := run(t, "", "build", flag, "type=registry,ref=REG/x:1", dir)
		if r.code == 0 || !strings.Contains(r.stderr, flag+` "type=registry,ref=REG/x:1"`) {
			t.Errorf("%s: exit %d, stderr %q; want a failure naming the flag and ref", flag, r.code, r.stderr)
		}
	}
	if ents, _ := os.ReadDir(wd); len(ents) != 0 {
		t.Errorf("the working directory got %v", ents)
	}
}

// TestCacheMountsRegistryFailures: an unreachable registry fails naming the
// flag and the reference, a missing reference is a cold start, and a mount
// over the bound is left out with a warning.
func TestCacheMountsRegistryFailures(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
RUN --mount=type=cache,target=/big head -c 20000 /dev/zero > /big/zeros
`})
	t.Run("unreachable from", func(t *testing.T) {
		t.Parallel()
		spec := "type=registry,ref=127.0.0.1:1/e2e/mounts:1"
		r := e.build(t, t.TempDir(), "--cache-mounts-from", spec, ctx)
		if r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("--cache-mounts-from %q", spec)) || !strings.Contains(r.stderr, "importing cache mounts from 127.0.0.1:1/e2e/mounts:1") {
			t.Errorf("exit %d; want a failure naming the flag and ref:\n%s", r.code, r.stderr)
		}
	})
	t.Run("unreachable to", func(t *testing.T) {
		t.Parallel()
		spec := "type=registry,ref=127.0.0.1:1/e2e/mounts:1"
		r := e.build(t, t.TempDir(), "--cache-mounts-to", spec, ctx)
		if r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("--cache-mounts-to %q", spec)) || !strings.Contains(r.stderr, "saving cache mounts to 127.0.0.1:1/e2e/mounts:1") {
			t.Errorf("exit %d; want a failure naming the flag and ref:\n%s", r.code, r.stderr)
		}
	})
	t.Run("missing ref is a cold start", func(t *testing.T) {
		t.Parallel()
		r := e.build(t, t.TempDir(), "--cache-mounts-from", "type=registry,ref="+e.registry+"/e2e/never-pushed:1", ctx)
		if r.code != 0 || !strings.Contains(r.stderr, "no cache mounts at "+e.registry+"/e2e/never-pushed:1 yet") {
			t.Errorf("exit %d; want success with a note:\n%s", r.code, r.stderr)
		}
	})
	t.Run("over the bound", func(t *testing.T) {
		t.Parallel()
		ref := e.registry + "/e2e/bounded-mounts:1"
		r := e.build(t, t.TempDir(), "--max-cache-mount-size", "10KB", "--cache-mounts-to", "type=registry,ref="+ref, ctx)
		if r.code != 0 {
			t.Fatal(r.stderr)
		}
		if !strings.Contains(r.stderr, "not saving cache mount") || !strings.Contains(r.stderr, "(target /big): its 19.53KiB are over the bound of 10KiB per mount") {
			t.Errorf("no warning naming the mount and its size:\n%s", r.stderr)
		}
		if m, _ := cacheMountsArtifact(t, ref); len(m.Layers) != 0 {
			t.Errorf("the artifact has %d layers, want none", len(m.Layers))
		}
	})
}
