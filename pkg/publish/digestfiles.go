package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// write writes the files asked for. refs are the image's destinations, in
// order; REPOSITORY is go-containerregistry's fully qualified name
// (index.docker.io/library/app), as kaniko writes it.
func (d DigestFiles) write(ctx context.Context, put putter, refs []name.Reference, digest string) error {
	if d.Digest != "" {
		if err := put.file(ctx, d.Digest, []byte(digest)); err != nil {
			return fmt.Errorf("digest file: %w", err)
		}
	}
	if d.NameDigest != "" {
		var b bytes.Buffer
		for _, r := range refs {
			fmt.Fprintf(&b, "%s@%s\n", r.Context().Name(), digest)
		}
		if err := put.file(ctx, d.NameDigest, b.Bytes()); err != nil {
			return fmt.Errorf("image-name-with-digest file: %w", err)
		}
	}
	if d.NameTagDigest != "" {
		var b bytes.Buffer
		for _, r := range refs {
			if t, ok := r.(name.Tag); ok {
				fmt.Fprintf(&b, "%s:%s@%s\n", r.Context().Name(), t.TagStr(), digest)
			} else {
				fmt.Fprintf(&b, "%s@%s\n", r.Context().Name(), digest)
			}
		}
		if err := put.file(ctx, d.NameTagDigest, b.Bytes()); err != nil {
			return fmt.Errorf("image-name-tag-with-digest file: %w", err)
		}
	}
	return nil
}

// putter writes the digest files; client sends the https:// PUTs (nil:
// http.DefaultClient).
type putter struct{ client *http.Client }

// file writes data to path, or PUTs it as text/plain when path is an
// https:// URL (a pre-signed bucket URL, as kaniko allows). Local parent
// directories are created 0700 and the file 0644, as kaniko does.
func (p putter) file(ctx context.Context, path string, data []byte) error {
	if strings.HasPrefix(path, "https://") {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, path, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "text/plain")
		client := p.client
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			// The URL may carry a signature: name only its host.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return fmt.Errorf("PUT to %s: %w", req.URL.Host, err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("PUT to %s: %s", req.URL.Host, resp.Status)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
