package builder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgbuild/imgbuild/internal/boundio"
	"github.com/imgbuild/imgbuild/pkg/builder/internal/embedded"
)

// Limits bound what a pulled image (a base image, a cache import) may make
// the build fetch and unpack, so that a hostile image fails the build
// instead of filling the disk. Each field's zero value is its default in
// [DefaultLimits]; [NoLimit] turns a limit off.
type Limits struct {
	// LayerSize bounds one layer's uncompressed size in bytes.
	LayerSize int64
	// ImageSize bounds the uncompressed size of an image's layers together:
	// a layer is refused when it brings the layers below it and itself over
	// the bound. Layers unpacked before this limit existed count as 0.
	ImageSize int64
	// ManifestSize bounds a manifest or index body in bytes.
	ManifestSize int64
	// ConfigSize bounds an image config blob in bytes.
	ConfigSize int64
	// Layers bounds the number of layers an image manifest lists.
	Layers int64
}

// NoLimit, as a [Limits] field, turns that limit off.
const NoLimit = -1

// DefaultLimits are the limits a zero [Limits] field means: beyond what any
// legitimate image reaches. The manifest bound is distribution's (a registry
// refuses larger manifest uploads; containerd's resolver refuses 4.4 MB);
// 500 layers is overlayfs's stack depth, which no image over it can mount.
var DefaultLimits = Limits{
	LayerSize:    16 << 30,
	ImageSize:    64 << 30,
	ManifestSize: 4 << 20,
	ConfigSize:   8 << 20,
	Layers:       500,
}

// WithLimits sets the limits on pulled images. The default is
// [DefaultLimits]. A process that joins another's state dir gets that
// process's limits.
func WithLimits(l Limits) Option {
	return func(o *options) error {
		for _, v := range []int64{l.LayerSize, l.ImageSize, l.ManifestSize, l.ConfigSize, l.Layers} {
			if v < NoLimit {
				return fmt.Errorf("limit %d: want a positive bound, 0 for the default or NoLimit", v)
			}
		}
		o.limits = l
		return nil
	}
}

// resolved is l with defaults filled in and NoLimit as 0, which internally
// means no bound.
func (l Limits) resolved() Limits {
	pick := func(v, def int64) int64 {
		switch v {
		case 0:
			return def
		case NoLimit:
			return 0
		}
		return v
	}
	d := DefaultLimits
	return Limits{
		LayerSize:    pick(l.LayerSize, d.LayerSize),
		ImageSize:    pick(l.ImageSize, d.ImageSize),
		ManifestSize: pick(l.ManifestSize, d.ManifestSize),
		ConfigSize:   pick(l.ConfigSize, d.ConfigSize),
		Layers:       pick(l.Layers, d.Layers),
	}
}

// LimitKind names one of the [Limits].
type LimitKind = embedded.LimitKind

// The limits, as [BuildError.Limit] names them.
const (
	LimitLayerSize    = embedded.LimitLayerSize
	LimitImageSize    = embedded.LimitImageSize
	LimitManifestSize = embedded.LimitManifestSize
	LimitConfigSize   = embedded.LimitConfigSize
	LimitLayers       = embedded.LimitLayers
)

// limitError is a pulled image over one of the limits (see
// [embedded.LimitError]); [buildError] reads the kind back from its text
// (see limitText).
type limitError = embedded.LimitError

// limitTransport enforces the manifest, config and layer count limits on a
// registry client's responses: a manifest or config larger than its bound
// fails before BuildKit reads it, and an image manifest listing too many
// layers, or a config over the bound, fails when the manifest is read.
type limitTransport struct {
	next   http.RoundTripper
	limits Limits // resolved
}

// withLimits returns a copy of c whose responses go through [limitTransport].
func withLimits(c *http.Client, l Limits) *http.Client {
	if l.ManifestSize == 0 && l.ConfigSize == 0 && l.Layers == 0 {
		return c
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cc := *c
	cc.Transport = &limitTransport{next: rt, limits: l}
	return &cc
}

// RoundTrip implements http.RoundTripper.
func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode/100 != 2 || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return resp, err
	}
	repo, kind, ref, ok := splitRegistryPath(req.URL.Path)
	if !ok {
		return resp, nil
	}
	name := sourceName(req.URL.Host, repo)
	if strings.Contains(ref, ":") {
		name += "@" + ref
	} else {
		name += ":" + ref
	}
	switch kind {
	case "manifests":
		if t.limits.ManifestSize > 0 {
			if err := t.bound(resp, LimitManifestSize, "manifest "+name, t.limits.ManifestSize); err != nil {
				return nil, err
			}
		}
		if req.Method == http.MethodGet && isImageManifest(resp.Header.Get("Content-Type")) {
			if err := t.checkManifest(resp, name); err != nil {
				return nil, err
			}
		}
	case "blobs":
		// containerd asks for a blob with its media type first in Accept;
		// a config's is the only JSON one among an image's blobs.
		if t.limits.ConfigSize > 0 && isConfig(req.Header.Get("Accept")) {
			if err := t.bound(resp, LimitConfigSize, "config "+ref+" of "+sourceName(req.URL.Host, repo), t.limits.ConfigSize); err != nil {
				return nil, err
			}
		}
	}
	return resp, nil
}

// bound fails resp when its declared length is over max, and otherwise
// makes its body fail once it has passed max bytes.
func (t *limitTransport) bound(resp *http.Response, kind LimitKind, subject string, max int64) error {
	if resp.ContentLength > max {
		resp.Body.Close()
		return &limitError{Kind: kind, Subject: subject, Detail: fmt.Sprintf("%d bytes", resp.ContentLength), Max: max}
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = boundedBody{Closer: resp.Body, Reader: &boundio.Reader{R: resp.Body, Max: max, Err: &limitError{
			Kind: kind, Subject: subject, Detail: fmt.Sprintf("more than %d bytes", max), Max: max}}}
	}
	return nil
}

// checkManifest reads an image manifest (already bounded) and checks its
// layer count and declared config size. BuildKit's cache manifests are
// left alone: their layers are a cache's, not one image's.
func (t *limitTransport) checkManifest(resp *http.Response, name string) error {
	if t.limits.Layers == 0 && t.limits.ConfigSize == 0 {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		Config struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
		} `json:"config"`
		Layers []json.RawMessage `json:"layers"`
	}
	if json.Unmarshal(body, &m) != nil || !isConfig(m.Config.MediaType) {
		return nil
	}
	if n := int64(len(m.Layers)); t.limits.Layers > 0 && n > t.limits.Layers {
		return &limitError{Kind: LimitLayers, Subject: "manifest " + name, Detail: fmt.Sprintf("%d layers", n), Max: t.limits.Layers}
	}
	if t.limits.ConfigSize > 0 && m.Config.Size > t.limits.ConfigSize {
		return &limitError{Kind: LimitConfigSize, Subject: "config " + m.Config.Digest + " of " + name,
			Detail: fmt.Sprintf("%d bytes", m.Config.Size), Max: t.limits.ConfigSize}
	}
	return nil
}

// isConfig reports whether the first media type in s (a Content-Type, or
// an Accept list) is an OCI or Docker image config's.
func isConfig(s string) bool {
	first, _, _ := strings.Cut(s, ",")
	mt, _, err := mime.ParseMediaType(strings.TrimSpace(first))
	if err != nil {
		return false
	}
	switch types.MediaType(mt) {
	case types.OCIConfigJSON, types.DockerConfigJSON:
		return true
	}
	return false
}

// boundedBody is a response body that fails once it passed its limit.
type boundedBody struct {
	*boundio.Reader
	io.Closer
}
