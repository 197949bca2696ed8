package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// uploadTTL is how long an upload may sit idle before the next POST
// removes it; distribution purges abandoned uploads the same way.
const uploadTTL = time.Hour

// uploads serves the blob upload endpoints itself, streaming every chunk to
// a file under dir, because ggcr's registry keeps each upload in memory
// until it is complete (pkg/registry/blobs.go, the uploads map), which made
// a 300 MB push cost ~1 GB of RSS. Completed blobs are renamed into blobDir
// in the layout of ggcr's disk blob handler (<algorithm>/<hex>), which then
// serves them.
//
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs
type uploads struct {
	dir     string // root/uploads, on the same file system as blobDir
	blobDir string

	mu     sync.Mutex
	active map[string]*upload
}

// upload is one session: the bytes so far in a file, hashed as they come.
type upload struct {
	id, repo string

	mu     sync.Mutex // orders the chunks
	f      *os.File
	size   int64
	h      hash.Hash
	closed bool // completed or cancelled
	last   time.Time
}

func newUploads(dir, blobDir string) (*uploads, error) {
	// The hashes of unfinished uploads lived in the previous process.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing stale uploads in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating registry root: %w", err)
	}
	return &uploads{dir: dir, blobDir: blobDir, active: map[string]*upload{}}, nil
}

// uploadPath splits /v2/<repo>/blobs/uploads/ and /v2/<repo>/blobs/uploads/<id>.
func uploadPath(p string) (repo, id string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/blobs/uploads")
	if i <= 0 {
		return "", "", false
	}
	repo, tail := rest[:i], rest[i+len("/blobs/uploads"):]
	if tail == "" || tail == "/" {
		return repo, "", true
	}
	id, ok = strings.CutPrefix(tail, "/")
	return repo, id, ok && !strings.Contains(id, "/")
}

func (u *uploads) serve(w http.ResponseWriter, r *http.Request, repo, id string) {
	if id == "" {
		if r.Method != http.MethodPost {
			writeRegError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" of "+r.URL.Path)
			return
		}
		u.start(w, r, repo)
		return
	}
	up := u.lookup(repo, id)
	if up == nil {
		writeRegError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload "+id)
		return
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.closed {
		writeRegError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload "+id)
		return
	}
	up.last = time.Now()
	switch r.Method {
	case http.MethodGet:
		u.progress(w, repo, id, up, http.StatusNoContent)
	case http.MethodPatch:
		if !u.appendBody(w, r, up) {
			return
		}
		u.progress(w, repo, id, up, http.StatusAccepted)
	case http.MethodPut:
		u.finish(w, r, repo, up)
	case http.MethodDelete:
		u.drop(up)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeRegError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" of "+r.URL.Path)
	}
}

// start handles POST: a mount, a monolithic upload, or a new session.
func (u *uploads) start(w http.ResponseWriter, r *http.Request, repo string) {
	u.expire()
	q := r.URL.Query()
	// Blobs are stored once for all repositories, so a mount only needs the
	// blob; without it the spec asks for a new session instead.
	if m := q.Get("mount"); m != "" && digRe.MatchString(m) {
		if _, err := os.Stat(u.blobPath(m)); err == nil {
			w.Header().Set("Location", "/v2/"+repo+"/blobs/"+m)
			w.Header().Set("Docker-Content-Digest", m)
			w.WriteHeader(http.StatusCreated)
			return
		}
	}
	id, up, err := u.create(repo)
	if err != nil {
		writeRegError(w, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", err.Error())
		return
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if q.Get("digest") != "" {
		u.finish(w, r, repo, up)
		return
	}
	u.progress(w, repo, id, up, http.StatusAccepted)
}

func (u *uploads) create(repo string) (string, *upload, error) {
	id := rand.Text()
	f, err := os.OpenFile(filepath.Join(u.dir, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", nil, fmt.Errorf("starting upload: %w", err)
	}
	up := &upload{id: id, repo: repo, f: f, h: sha256.New(), last: time.Now()}
	u.mu.Lock()
	u.active[id] = up
	u.mu.Unlock()
	return id, up, nil
}

func (u *uploads) lookup(repo, id string) *upload {
	u.mu.Lock()
	defer u.mu.Unlock()
	up := u.active[id]
	if up == nil || up.repo != repo {
		return nil
	}
	return up
}

// drop forgets an upload and removes its file; up.mu is held.
func (u *uploads) drop(up *upload) {
	up.closed = true
	_ = up.f.Close() // removed next
	_ = os.Remove(up.f.Name())
	u.mu.Lock()
	delete(u.active, up.id)
	u.mu.Unlock()
}

// expire drops uploads idle for longer than uploadTTL.
func (u *uploads) expire() {
	u.mu.Lock()
	var stale []string
	for id, up := range u.active {
		if up.mu.TryLock() {
			if time.Since(up.last) > uploadTTL {
				stale = append(stale, id)
			}
			up.mu.Unlock()
		}
	}
	u.mu.Unlock()
	for _, id := range stale {
		u.mu.Lock()
		up := u.active[id]
		u.mu.Unlock()
		if up == nil {
			continue
		}
		up.mu.Lock()
		if !up.closed && time.Since(up.last) > uploadTTL {
			u.drop(up)
		}
		up.mu.Unlock()
	}
}

// progress reports where an upload stands, as distribution does.
func (u *uploads) progress(w http.ResponseWriter, repo, id string, up *upload, status int) {
	end := up.size - 1
	if end < 0 {
		end = 0 // distribution's "0-0" for an empty upload
	}
	w.Header().Set("Location", "/v2/"+repo+"/blobs/uploads/"+id)
	w.Header().Set("Range", fmt.Sprintf("0-%d", end))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

// appendBody appends the request body to the upload at the offset its
// Content-Range names, or at the end without one (a streamed upload). On any
// failure the upload is cut back to where it was, so a client can retry the
// chunk. It reports whether it succeeded; if not, it has written the error.
func (u *uploads) appendBody(w http.ResponseWriter, r *http.Request, up *upload) bool {
	want := int64(-1) // bytes this chunk must hold, when known
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok || start != up.size {
			writeRegError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("Content-Range %q does not continue the upload at byte %d", cr, up.size))
			return false
		}
		want = end - start + 1
		if r.ContentLength >= 0 && r.ContentLength != want {
			writeRegError(w, http.StatusBadRequest, "SIZE_INVALID",
				fmt.Sprintf("Content-Range %q holds %d bytes, Content-Length is %d", cr, want, r.ContentLength))
			return false
		}
	}
	// Hash a clone, so a failed chunk leaves the upload's hash untouched.
	h, err := cloneHash(up.h)
	if err != nil {
		writeRegError(w, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", err.Error())
		return false
	}
	n, err := io.Copy(io.MultiWriter(up.f, h), r.Body)
	if err == nil && want >= 0 && n != want {
		writeRegError(w, http.StatusBadRequest, "SIZE_INVALID",
			fmt.Sprintf("chunk holds %d bytes, Content-Range says %d", n, want))
		err = errors.New("short chunk")
	} else if err != nil {
		writeRegError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", fmt.Sprintf("reading chunk: %v", err))
	}
	if err != nil {
		_, serr := up.f.Seek(up.size, io.SeekStart) // the next write lands where the hash is
		if terr := up.f.Truncate(up.size); terr != nil || serr != nil {
			u.drop(up) // no way back to a state the hash matches
		}
		return false
	}
	up.size += n
	up.h = h
	return true
}

// finish handles PUT ?digest= (and POST ?digest=): it appends a final
// chunk, checks the digest, and moves the file into the blob store.
// The upload is dropped whatever the outcome, as distribution cancels an
// upload its commit refuses.
func (u *uploads) finish(w http.ResponseWriter, r *http.Request, repo string, up *upload) {
	defer func() {
		if !up.closed {
			u.drop(up)
		}
	}()
	digest := r.URL.Query().Get("digest")
	if !digRe.MatchString(digest) {
		writeRegError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("digest %q is not a sha256 digest", digest))
		return
	}
	if !u.appendBody(w, r, up) {
		return
	}
	if got := "sha256:" + hex.EncodeToString(up.h.Sum(nil)); got != digest {
		writeRegError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("upload has digest %s, not %s", got, digest))
		return
	}
	if err := u.commit(up, digest); err != nil {
		writeRegError(w, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", err.Error())
		return
	}
	w.Header().Set("Location", "/v2/"+repo+"/blobs/"+digest)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// commit moves a verified upload to its place in the blob store; up.mu is held.
func (u *uploads) commit(up *upload, digest string) error {
	if err := up.f.Sync(); err != nil {
		return fmt.Errorf("writing upload %s: %w", up.f.Name(), err)
	}
	if err := up.f.Close(); err != nil {
		return fmt.Errorf("writing upload %s: %w", up.f.Name(), err)
	}
	dst := u.blobPath(digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("storing blob %s: %w", digest, err)
	}
	if err := os.Rename(up.f.Name(), dst); err != nil {
		return fmt.Errorf("storing blob %s: %w", digest, err)
	}
	up.closed = true
	u.mu.Lock()
	delete(u.active, up.id)
	u.mu.Unlock()
	return nil
}

// blobPath is where ggcr's disk blob handler keeps digest
// (regserver.NewDiskBlobHandler: <dir>/<algorithm>/<hex>).
func (u *uploads) blobPath(digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(u.blobDir, alg, hex)
}

// parseContentRange reads the "<start>-<end>" of a chunk, inclusive; a
// "bytes=" or "bytes " prefix is accepted as some clients send it.
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "bytes="), "bytes ")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

// cloneHash copies a sha256 state through its binary form.
func cloneHash(h hash.Hash) (hash.Hash, error) {
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("saving upload hash: %w", err)
	}
	c := sha256.New()
	if err := c.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("restoring upload hash: %w", err)
	}
	return c, nil
}
