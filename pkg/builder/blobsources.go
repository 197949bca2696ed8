package builder

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// Where pulled blobs came from. BuildKit pulls base image layers lazily and
// its content store does not say which repository a blob was pulled from, so
// a push to a new repository would upload the base layers again. The owner
// of a state dir records, as BuildKit talks to registries, the repository
// each blob was served by (from image manifests, whose config and layers the
// repository holds, and from blob downloads), and keeps the records in
// BlobSourcesFile; a push can then ask the registry to mount those blobs
// from there (see registry.Options.BlobSources). The records outlive the
// process because a warm cache never fetches the manifest again.

// BlobSourcesFile is the state dir's record of where pulled blobs came from:
// digest → "host/repository", newest first.
const BlobSourcesFile = "blob-sources.json"

// Bounds of the records: a few repositories per blob and a few thousand
// blobs, the most recently seen kept; the file stays well under a megabyte.
const (
	maxBlobSources       = 3
	maxBlobSourceDigests = 4096
	// maxRecordedManifest bounds the manifest body kept to read digests
	// from; larger manifests pass through unrecorded.
	maxRecordedManifest = 4 << 20
)

// blobSources is the owner's copy of [BlobSourcesFile]. Every record that
// teaches it something new is written through at once, so that a process
// that joined this one finds it in the file when its build is done.
type blobSources struct {
	path string

	mu     sync.Mutex
	loaded bool
	seq    uint64
	byDig  map[string]*blobSource
}

type blobSource struct {
	sources []string // newest first
	seq     uint64   // when last recorded; higher is newer
}

// blobSourcesFile is the file's format.
type blobSourcesFile struct {
	// Blobs are newest first.
	Blobs []blobSourcesEntry `json:"blobs"`
}

type blobSourcesEntry struct {
	Digest  string   `json:"digest"`
	Sources []string `json:"sources"`
}

func newBlobSources(root string) *blobSources {
	return &blobSources{path: filepath.Join(root, BlobSourcesFile)}
}

// readBlobSources reads the file at path. A missing or unreadable file is
// no records: they are only hints.
func readBlobSources(path string) []blobSourcesEntry {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var f blobSourcesFile
	if json.Unmarshal(b, &f) != nil {
		return nil
	}
	return f.Blobs
}

// load reads the file on first use; s.mu is held.
func (s *blobSources) load() {
	if s.loaded {
		return
	}
	s.loaded = true
	s.byDig = map[string]*blobSource{}
	entries := readBlobSources(s.path)
	if len(entries) > maxBlobSourceDigests {
		entries = entries[:maxBlobSourceDigests]
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if _, err := v1.NewHash(e.Digest); err != nil || len(e.Sources) == 0 {
			continue
		}
		s.seq++
		srcs := e.Sources
		if len(srcs) > maxBlobSources {
			srcs = srcs[:maxBlobSources]
		}
		s.byDig[e.Digest] = &blobSource{sources: slices.Clone(srcs), seq: s.seq}
	}
}

// record notes that source ("host/repository") serves digests, and writes
// the file if that is news. Errors are dropped: the records are hints, and
// a push without them uploads as before.
func (s *blobSources) record(source string, digests ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load()
	changed := false
	for _, d := range digests {
		s.seq++
		e, ok := s.byDig[d]
		if !ok {
			e = &blobSource{}
			s.byDig[d] = e
		}
		e.seq = s.seq
		if len(e.sources) > 0 && e.sources[0] == source {
			continue
		}
		e.sources = slices.DeleteFunc(e.sources, func(x string) bool { return x == source })
		e.sources = append([]string{source}, e.sources...)
		if len(e.sources) > maxBlobSources {
			e.sources = e.sources[:maxBlobSources]
		}
		changed = true
	}
	if changed {
		_ = s.save()
	}
}

// save writes the records, newest first and at most maxBlobSourceDigests
// of them, through a temporary file and a rename; s.mu is held.
func (s *blobSources) save() error {
	digests := make([]string, 0, len(s.byDig))
	for d := range s.byDig {
		digests = append(digests, d)
	}
	slices.SortFunc(digests, func(a, b string) int { return cmp.Compare(s.byDig[b].seq, s.byDig[a].seq) })
	if len(digests) > maxBlobSourceDigests {
		for _, d := range digests[maxBlobSourceDigests:] {
			delete(s.byDig, d)
		}
		digests = digests[:maxBlobSourceDigests]
	}
	f := blobSourcesFile{Blobs: make([]blobSourcesEntry, 0, len(digests))}
	for _, d := range digests {
		f.Blobs = append(f.Blobs, blobSourcesEntry{Digest: d, Sources: s.byDig[d].sources})
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, append(b, '\n'), 0o600)
}

// lookup returns the recorded sources of digests, leaving out those with
// none.
func (s *blobSources) lookup(digests []v1.Hash) map[v1.Hash][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load()
	out := map[v1.Hash][]string{}
	for _, d := range digests {
		if e, ok := s.byDig[d.String()]; ok {
			out[d] = slices.Clone(e.sources)
		}
	}
	return out
}

// lookupBlobSources is [blobSources.lookup] for a process that does not own
// the state dir at root: it reads the owner's file.
func lookupBlobSources(root string, digests []v1.Hash) map[v1.Hash][]string {
	return newBlobSources(root).lookup(digests)
}

// withSourceRecorder returns a copy of c whose successful registry GETs are
// recorded in s. A nil s leaves c as it is.
func withSourceRecorder(c *http.Client, s *blobSources) *http.Client {
	if s == nil {
		return c
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cc := *c
	cc.Transport = &sourceRecorder{next: rt, sources: s}
	return &cc
}

// sourceRecorder records in sources which repository served which blobs:
// every blob named by an image manifest fetched from /v2/REPO/manifests/REF
// (read as the body passes through to BuildKit, unchanged), and every blob
// fetched from /v2/REPO/blobs/DIGEST. It looks at URLs, status codes and
// bodies, never at request headers.
type sourceRecorder struct {
	next    http.RoundTripper
	sources *blobSources
}

// RoundTrip implements http.RoundTripper.
func (r *sourceRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet {
		return resp, err
	}
	repo, kind, ref, ok := splitRegistryPath(req.URL.Path)
	if !ok {
		return resp, err
	}
	source := sourceName(req.URL.Host, repo)
	switch kind {
	case "blobs":
		// A registry answers a blob it holds with the content or with a
		// redirect to its storage.
		if resp.StatusCode/100 != 2 && resp.StatusCode/100 != 3 {
			return resp, err
		}
		if _, herr := v1.NewHash(ref); herr == nil {
			r.sources.record(source, ref)
		}
	case "manifests":
		if resp.StatusCode/100 != 2 || !isImageManifest(resp.Header.Get("Content-Type")) ||
			resp.ContentLength > maxRecordedManifest || resp.Body == nil {
			return resp, err
		}
		resp.Body = &manifestTee{ReadCloser: resp.Body, done: func(body []byte) {
			if ds := manifestBlobs(body); len(ds) > 0 {
				r.sources.record(source, ds...)
			}
		}}
	}
	return resp, err
}

// splitRegistryPath splits a distribution API path /v2/REPO/KIND/REF, KIND
// being manifests or blobs (not blob uploads).
func splitRegistryPath(p string) (repo, kind, ref string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", "", false
	}
	for _, kind := range []string{"manifests", "blobs"} {
		i := strings.LastIndex(rest, "/"+kind+"/")
		if i <= 0 {
			continue
		}
		repo, ref = rest[:i], rest[i+len(kind)+2:]
		if ref == "" || strings.Contains(ref, "/") {
			return "", "", "", false
		}
		return repo, kind, ref, true
	}
	return "", "", "", false
}

// sourceName names repo on host as a push reference would: Docker Hub's
// registry-1.docker.io is docker.io.
func sourceName(host, repo string) string {
	if host == "registry-1.docker.io" {
		host = "docker.io"
	}
	return host + "/" + repo
}

// isImageManifest reports whether the Content-Type ct is an OCI or Docker
// schema 2 image manifest (an index names no blobs of its own).
func isImageManifest(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch types.MediaType(mt) {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		return true
	}
	return false
}

// manifestBlobs returns the config and layer digests of an image manifest.
func manifestBlobs(body []byte) []string {
	var m struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	digests := []string{m.Config.Digest}
	for _, l := range m.Layers {
		digests = append(digests, l.Digest)
	}
	var out []string
	for _, d := range digests {
		if _, err := v1.NewHash(d); err == nil && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// manifestTee passes a manifest body through and keeps a copy, up to
// maxRecordedManifest bytes; once the body is read to its end (or closed),
// done gets the copy. A body that outgrows the bound, or fails, is not
// handed to done.
type manifestTee struct {
	io.ReadCloser
	buf      bytes.Buffer
	overflow bool
	failed   bool
	once     sync.Once
	done     func([]byte)
}

// Read implements io.Reader.
func (t *manifestTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if !t.overflow {
		if t.buf.Len()+n > maxRecordedManifest {
			t.overflow = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		t.finish()
	case err != nil:
		t.failed = true
	}
	return n, err
}

// Close implements io.Closer.
func (t *manifestTee) Close() error {
	t.finish()
	return t.ReadCloser.Close()
}

func (t *manifestTee) finish() {
	t.once.Do(func() {
		if !t.overflow && !t.failed && t.buf.Len() > 0 {
			t.done(t.buf.Bytes())
		}
	})
}
