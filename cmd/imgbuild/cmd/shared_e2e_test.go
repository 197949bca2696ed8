package cmd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// TestCacheSharedStateDir runs 8 builds of different Dockerfiles on one state
// dir, four at once and four more as soon as one of those is done. They share the base image
// and a first RUN step whose output differs on every run: all must succeed,
// build that step once (one layer digest across all images, CACHED in the
// later ones), and leave no process, socket or mount behind.
func TestCacheSharedStateDir(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	const n = 8
	results := make([]result, n)
	refs := make([]string, n)
	var wg, firstWave sync.WaitGroup
	for i := range n {
		dir := writeContext(t, map[string]string{
			"Dockerfile": fmt.Sprintf(`ARG BASE
FROM ${BASE}
RUN echo "shared $(date +%%s%%N)" > /shared && sleep 0.3
RUN echo "build %d" > /own
COPY own.txt /own.txt
`, i),
			"own.txt": fmt.Sprintf("file %d\n", i),
		})
		refs[i] = fmt.Sprintf("%s/e2e/shared-%d:v1", e.registry, i)
		if i == n/2 {
			// The second wave starts once the first is done, so that it
			// finds the shared step in the cache: while a build that used
			// the step still runs, BuildKit hands a new one the step's
			// running state, whose progress says DONE, not CACHED.
			firstWave.Wait()
		}
		wg.Add(1)
		if i < n/2 {
			firstWave.Add(1)
		}
		go func() {
			defer wg.Done()
			results[i] = e.build(t, root, "-t", refs[i], "--push", dir)
			if i < n/2 {
				firstWave.Done()
			}
		}()
	}
	wg.Wait()

	var joined, cached int
	var sharedLayer string
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("build %d failed:\n%s", i, r.stderr)
			continue
		}
		if strings.Contains(r.stderr, "sharing state dir") {
			joined++
		}
		if i >= n/2 && stepCached(t, r.stderr, `RUN echo "shared`) {
			cached++
		}
		img := pull(t, refs[i])
		layers := layerDigests(t, refs[i])
		if len(layers) != 4 {
			t.Fatalf("image %d has %d layers, want 4", i, len(layers))
		}
		if sharedLayer == "" {
			sharedLayer = layers[1].String()
		} else if layers[1].String() != sharedLayer {
			t.Errorf("build %d ran the shared RUN step again: layer %s, want %s", i, layers[1], sharedLayer)
		}
		if got := files(t, img)["own.txt"]; got != fmt.Sprintf("file %d\n", i) {
			t.Errorf("image %d has own.txt %q", i, got)
		}
	}
	t.Logf("%d of %d builds joined another's state dir; %d of the second wave showed the shared step CACHED", joined, n, cached)
	if joined == 0 {
		t.Error("no build joined the state dir's owner: they ran one after the other")
	}
	if cached == 0 {
		t.Error("no build of the second wave reused the shared step from the cache")
	}

	// The last one out closed the shared controller: nothing is left and the
	// state dir is free.
	assertNothingLeft(t, e, root)
	socks, _ := filepath.Glob(filepath.Join(root, "*.sock"))
	if len(socks) != 0 {
		t.Errorf("sockets left behind: %v", socks)
	}
	lock, err := statedir.At(root).Lock(t.Context(), statedir.LockOptions{})
	if err != nil {
		t.Fatalf("state dir still locked after all builds: %v", err)
	}
	lock.Release()
	if _, err := os.Stat(filepath.Join(root, "images")); err != nil {
		t.Error(err)
	}
}

// TestCacheSharedOwnerKilled checks the failure of the process serving a
// shared state dir: du joins it while it builds, and a build that joined it
// survives its kill -9 by taking over the state dir and building again.
func TestCacheSharedOwnerKilled(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	start := func(dockerfile string) (*exec.Cmd, *bytes.Buffer) {
		dir := writeContext(t, map[string]string{"Dockerfile": dockerfile})
		cmd := exec.Command(binary, "build", "--root", root, "--runc", e.runc, "--progress", "plain",
			"--build-arg", "BASE="+e.base, dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, &stderr
	}
	owner, _ := start("ARG BASE\nFROM ${BASE}\nRUN sleep 5 && echo owner > /owner\n")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if socks, _ := filepath.Glob(filepath.Join(root, "*.sock")); len(socks) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first build never served the state dir")
		}
		time.Sleep(50 * time.Millisecond)
	}

	du := imgbuild(t, "", "du", "--root", root, "--runc", e.runc)
	if du.code != 0 || !strings.Contains(du.stderr, "sharing state dir") {
		t.Errorf("du while a build runs: exit %d, want it to join:\n%s", du.code, du.stderr)
	}

	joiner, stderr := start("ARG BASE\nFROM ${BASE}\nRUN sleep 2 && echo joiner > /joiner\n")
	time.Sleep(time.Second)
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	if err := joiner.Wait(); err != nil {
		t.Fatalf("joined build failed after its owner was killed (%v):\n%s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "sharing state dir") || !strings.Contains(stderr.String(), "building again") {
		t.Errorf("the second build did not join and then take over:\n%s", stderr)
	}
	assertNothingLeft(t, e, root)
	if socks, _ := filepath.Glob(filepath.Join(root, "*.sock")); len(socks) != 0 {
		t.Errorf("sockets left behind: %v", socks)
	}
}
