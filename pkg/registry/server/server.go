// Package server is the registry `imgbuild registry serve` runs for laptops
// and demos: go-containerregistry's registry with its blobs and manifests kept
// on disk, so that its content survives a restart. Blob uploads are served
// here rather than by ggcr, streamed to disk (see uploads.go).
package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// manifestsDir is the directory under each repository's directory in
// root/manifests holding one file per tag or digest. Repository path
// components cannot start with "_", so it never clashes with a repository.
const manifestsDir = "_manifests"

// maxManifestSize bounds what the server buffers for one manifest PUT.
const maxManifestSize = 4 << 20

var (
	// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
	repoRe = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digRe  = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// New returns a registry handler for laptops and demos: ggcr's
// in-process registry with blobs stored under root/blobs and manifests
// persisted under root/manifests, so its content survives a restart. ggcr
// keeps manifests in memory only; every successful manifest PUT and DELETE is
// therefore mirrored to disk and replayed through the handler on start.
// Blob uploads never reach ggcr: they are streamed to files under
// root/uploads and renamed into root/blobs when their digest checks out.
// Requests are logged through logf; nil discards them.
func New(root string, logf func(format string, args ...any)) (http.Handler, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	blobDir := filepath.Join(root, "blobs")
	up, err := newUploads(filepath.Join(root, "uploads"), blobDir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{blobDir, filepath.Join(root, "manifests")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating registry root: %w", err)
		}
	}
	s := &server{
		root: filepath.Join(root, "manifests"),
		next: regserver.New(
			regserver.WithBlobHandler(regserver.NewDiskBlobHandler(blobDir)),
			regserver.Logger(log.New(logfWriter(logf), "", 0)),
		),
		logf:    logf,
		uploads: up,
	}
	if err := s.replay(); err != nil {
		return nil, err
	}
	return s, nil
}

type server struct {
	root string // root/manifests
	next http.Handler
	logf func(format string, args ...any)
	// uploads serves blob uploads in place of ggcr, which buffers them.
	uploads *uploads

	// mu orders manifest writes so the files match ggcr's in-memory state.
	mu sync.Mutex
}

// storedManifest is the on-disk form of one tag or digest.
type storedManifest struct {
	MediaType string `json:"mediaType"`
	Data      []byte `json:"data"`
}

// ServeHTTP implements http.Handler.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if repo, id, ok := uploadPath(r.URL.Path); ok {
		if !repoRe.MatchString(repo) {
			writeRegError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name")
			return
		}
		s.logf("%s %s", r.Method, r.URL)
		s.uploads.serve(w, r, repo, id)
		return
	}
	repo, ref, ok := manifestPath(r.URL.Path)
	if !ok || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
		s.next.ServeHTTP(w, r)
		return
	}
	// Names become paths under root: refuse anything the spec would.
	if !repoRe.MatchString(repo) || !tagRe.MatchString(ref) && !digRe.MatchString(ref) {
		writeRegError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository or reference")
		return
	}

	var body []byte
	if r.Method == http.MethodPut {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
		if err != nil {
			writeRegError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
			return
		}
		if len(body) > maxManifestSize {
			writeRegError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	sw := &statusWriter{ResponseWriter: w}
	s.next.ServeHTTP(sw, r)

	var err error
	switch {
	case r.Method == http.MethodPut && sw.status == http.StatusCreated:
		err = s.store(repo, ref, r.Header.Get("Content-Type"), body)
	case r.Method == http.MethodDelete && sw.status == http.StatusAccepted:
		err = s.remove(repo, ref)
	}
	if err != nil {
		// The response is already sent; the next restart will not see this
		// change, which is all we can still report.
		s.logf("persisting %s %s:%s: %v", r.Method, repo, ref, err)
	}
}

// store persists a manifest under its reference and its digest, as ggcr
// serves it by both.
func (s *server) store(repo, ref, mediaType string, data []byte) error {
	d, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return err
	}
	b, err := json.Marshal(storedManifest{MediaType: mediaType, Data: data})
	if err != nil {
		return err
	}
	dir := filepath.Join(s.root, filepath.FromSlash(repo), manifestsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range uniq(ref, d.String()) {
		if err := atomicfile.WriteSynced(filepath.Join(dir, name), 0o644, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) remove(repo, ref string) error {
	err := os.Remove(filepath.Join(s.root, filepath.FromSlash(repo), manifestsDir, ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// replay loads the persisted manifests into the handler by PUTting them
// again. Indexes are put after the manifests they list, since ggcr refuses
// an index whose children it does not know. A tag PUT also stores the digest,
// so digests deleted before the restart are deleted again afterwards.
func (s *server) replay() error {
	type entry struct {
		repo, ref string
		m         storedManifest
	}
	var entries []entry
	present := map[string]bool{} // repo + "@" + ref on disk
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") || filepath.Base(filepath.Dir(path)) != manifestsDir {
			return nil
		}
		rel, err := filepath.Rel(s.root, filepath.Dir(filepath.Dir(path)))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var m storedManifest
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("parsing %s: %w", path, err)
		}
		e := entry{repo: filepath.ToSlash(rel), ref: d.Name(), m: m}
		entries = append(entries, e)
		present[e.repo+"@"+e.ref] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading registry manifests: %w", err)
	}
	// Non-index manifests first; nested indexes need more passes.
	sort.SliceStable(entries, func(i, j int) bool {
		return !types.MediaType(entries[i].m.MediaType).IsIndex() && types.MediaType(entries[j].m.MediaType).IsIndex()
	})
	implied := map[string]bool{} // repo + "@" + digest created by a tag PUT
	for pending := entries; len(pending) > 0; {
		var retry []entry
		for _, e := range pending {
			req := httptest.NewRequest(http.MethodPut, "/v2/"+e.repo+"/manifests/"+e.ref, bytes.NewReader(e.m.Data))
			req.Header.Set("Content-Type", e.m.MediaType)
			rec := httptest.NewRecorder()
			s.next.ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				retry = append(retry, e)
				continue
			}
			d, _, _ := v1.SHA256(bytes.NewReader(e.m.Data))
			implied[e.repo+"@"+d.String()] = true
		}
		if len(retry) == len(pending) {
			for _, e := range retry {
				s.logf("restoring manifest %s:%s: refused by the registry, skipping", e.repo, e.ref)
			}
			break
		}
		pending = retry
	}
	for key := range implied {
		if present[key] {
			continue
		}
		repo, ref, _ := strings.Cut(key, "@")
		req := httptest.NewRequest(http.MethodDelete, "/v2/"+repo+"/manifests/"+ref, nil)
		s.next.ServeHTTP(httptest.NewRecorder(), req)
	}
	return nil
}

// manifestPath splits /v2/<repo>/manifests/<ref>.
func manifestPath(p string) (repo, ref string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	repo, ref = rest[:i], rest[i+len("/manifests/"):]
	return repo, ref, ref != "" && !strings.Contains(ref, "/")
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

func writeRegError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{ // the client hung up
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logfWriter adapts logf to the *log.Logger ggcr's registry wants.
type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
