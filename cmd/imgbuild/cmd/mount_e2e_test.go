package cmd

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgbuild/imgbuild/internal/testutil"
	"github.com/imgbuild/imgbuild/pkg/builder"
)

// uploadCounter watches a FaultProxy's blob uploads: the bytes sent, the
// digests uploaded and the mounts asked for (digest → from).
type uploadCounter struct {
	bytes    atomic.Int64
	mu       sync.Mutex
	uploaded map[string]bool
	mounts   map[string]string
}

func countUploads(p *testutil.FaultProxy) *uploadCounter {
	c := &uploadCounter{uploaded: map[string]bool{}, mounts: map[string]string{}}
	p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		k := testutil.RequestKind(r)
		if k != "POST upload-start" && k != "PATCH upload" && k != "PUT upload" {
			return false
		}
		q := r.URL.Query()
		c.mu.Lock()
		if from := q.Get("from"); from != "" {
			c.mounts[q.Get("mount")] = from
		}
		if d := q.Get("digest"); d != "" {
			c.uploaded[d] = true
		}
		c.mu.Unlock()
		if r.Body != nil {
			r.Body = countingBody{ReadCloser: r.Body, n: &c.bytes}
		}
		return false
	})
	return c
}

// take returns what was counted since the last call and starts over.
func (c *uploadCounter) take() (bytes int64, uploaded map[string]bool, mounts map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	uploaded, mounts = c.uploaded, c.mounts
	c.uploaded, c.mounts = map[string]bool{}, map[string]string{}
	return c.bytes.Swap(0), uploaded, mounts
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// TestPushMountsBaseLayersE2E builds FROM a base and pushes to a new
// repository of the registry the base came from: the base layers are
// mounted from the base's repository, not uploaded again. A second build,
// from the warm cache (which does not fetch the base's manifest again), to
// yet another repository mounts them too, from the records in the state
// dir. A push to a registry the base did not come from uploads them.
func TestPushMountsBaseLayersE2E(t *testing.T) {
	e := setup(t)
	p := testutil.StartFaultProxy(t, e.registry)
	counter := countUploads(p)
	baseRepo := strings.TrimPrefix(e.base, e.registry+"/")
	baseRepo, _, _ = strings.Cut(baseRepo, ":")
	base := p.Host + "/" + baseRepo + ":latest"
	baseImg := pull(t, base)
	baseLayers, err := baseImg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var baseDigests []v1.Hash
	var baseSize int64
	for _, l := range baseLayers {
		d, _ := l.Digest()
		s, _ := l.Size()
		baseDigests = append(baseDigests, d)
		baseSize += s
	}
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n"})
	root := t.TempDir()
	push := func(ref string) result {
		t.Helper()
		r := imgbuild(t, "", "build", "--root", root, "--runc", e.runc, "--progress", "plain",
			"--build-arg", "BASE="+base, "-t", ref, "--push", ctxDir)
		if r.code != 0 {
			t.Fatalf("build and push to %s failed (exit %d)", ref, r.code)
		}
		return r
	}
	check := func(name, ref string, digest string) {
		t.Helper()
		sent, uploaded, mounts := counter.take()
		t.Logf("%s: %d bytes uploaded (base layers: %d bytes), mounts asked: %v", name, sent, baseSize, mounts)
		for _, d := range baseDigests {
			if mounts[d.String()] != baseRepo {
				t.Errorf("%s: base layer %s not mounted from %s (mounts asked: %v)", name, d, baseRepo, mounts)
			}
			if uploaded[d.String()] {
				t.Errorf("%s: base layer %s uploaded", name, d)
			}
		}
		if sent >= baseSize {
			t.Errorf("%s: %d bytes uploaded, more than the base layers' %d", name, sent, baseSize)
		}
		img := pull(t, ref)
		if d, _ := img.Digest(); d.String() != strings.TrimSpace(digest) {
			t.Errorf("%s: registry serves %s, imgbuild printed %s", name, d, strings.TrimSpace(digest))
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != len(baseDigests)+1 {
			t.Fatalf("%s: %d layers, want the base's %d and one more", name, len(layers), len(baseDigests))
		}
		for i, d := range baseDigests {
			if got, _ := layers[i].Digest(); got != d {
				t.Errorf("%s: layer %d is %s, want the base's %s", name, i, got, d)
			}
		}
		if got := files(t, img)["hi"]; got != "hi\n" {
			t.Errorf("%s: /hi is %q", name, got)
		}
	}

	cold := p.Host + "/team/app-" + randHex(t) + ":v1"
	r := push(cold)
	check("cold build", cold, r.stdout)

	// The records are in the state dir for the next process.
	b, err := os.ReadFile(filepath.Join(root, builder.BlobSourcesFile))
	if err != nil {
		t.Fatal(err)
	}
	var recorded struct{ Blobs []struct{ Digest string } }
	if err := json.Unmarshal(b, &recorded); err != nil {
		t.Fatalf("%s: %v", builder.BlobSourcesFile, err)
	}
	if len(recorded.Blobs) == 0 {
		t.Errorf("%s records nothing", builder.BlobSourcesFile)
	}

	manifestGets := p.Count("GET manifest")
	warm := p.Host + "/team/app-" + randHex(t) + ":v1"
	r = push(warm)
	if !stepCached(t, r.stderr, "RUN echo hi") {
		t.Error("the second build's RUN step was not cached")
	}
	t.Logf("the warm build fetched %d manifests from the registry", p.Count("GET manifest")-manifestGets)
	check("warm build", warm, r.stdout)

	// Pulled from the registry directly, pushed through the proxy: another
	// registry host as far as imgbuild can tell, so nothing to mount from.
	other := p.Host + "/team/app-" + randHex(t) + ":v1"
	r = imgbuild(t, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain",
		"--build-arg", "BASE="+e.base, "-t", other, "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("build and push to %s failed (exit %d)", other, r.code)
	}
	sent, uploaded, mounts := counter.take()
	t.Logf("base from another registry host: %d bytes uploaded, mounts asked: %v", sent, mounts)
	for _, d := range baseDigests {
		if !uploaded[d.String()] {
			t.Errorf("base layer %s from another registry host not uploaded", d)
		}
	}
	if sent < baseSize {
		t.Errorf("%d bytes uploaded, less than the base layers' %d", sent, baseSize)
	}
}
