package embedded

import (
	"fmt"

	"github.com/docker/go-units"
)

// Limits are the bounds enforced while unpacking layers, resolved: 0 means
// no bound (pkg/builder fills in its defaults and turns its NoLimit into 0).
type Limits struct {
	// LayerSize bounds one layer's uncompressed size in bytes.
	LayerSize int64
	// ImageSize bounds the uncompressed size of an image's layers together.
	ImageSize int64
}

// LimitKind names one of the limits; pkg/builder re-exports it as
// builder.LimitKind.
type LimitKind string

// The limits, as builder.BuildError.Limit names them.
const (
	LimitLayerSize    LimitKind = "layer size"
	LimitImageSize    LimitKind = "image size"
	LimitManifestSize LimitKind = "manifest size"
	LimitConfigSize   LimitKind = "config size"
	LimitLayers       LimitKind = "layer count"
)

// LimitError is a pulled image over one of the limits. It reaches the
// caller as text through BuildKit's gRPC, and pkg/builder reads the kind
// back from that text, so its format is part of the contract.
type LimitError struct {
	Kind    LimitKind
	Subject string // "layer sha256:…", "manifest host/repo:tag"
	Detail  string // what was seen
	Max     int64
}

func (e *LimitError) Error() string {
	v := units.BytesSize(float64(e.Max))
	if e.Kind == LimitLayers {
		v = fmt.Sprint(e.Max)
	}
	return fmt.Sprintf("%s: %s, over the %s limit of %s", e.Subject, e.Detail, e.Kind, v)
}
