package builder

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/moby/buildkit/exporter/containerimage/exptypes"
)

// Layer compressions [Compression.Type] accepts.
const (
	Gzip         = "gzip"
	Zstd         = "zstd"
	Estargz      = "estargz"
	Uncompressed = "uncompressed"
)

// Errors [Compression.Validate] wraps, so that callers can tell which part of
// the choice is wrong.
var (
	ErrCompressionType  = errors.New("unsupported layer compression")
	ErrCompressionLevel = errors.New("invalid compression level")
)

// Compression is how the image's layers are compressed, as BuildKit's image
// exporter (and buildx's compression=, compression-level= and
// force-compression= output attributes) define it.
type Compression struct {
	// Type is gzip, zstd, estargz or uncompressed. The default ("") is
	// gzip. eStargz layers are gzip layers that lazy-pulling snapshotters
	// can read file by file; their manifest descriptors carry the TOC
	// annotations.
	Type string
	// Level is the compression level: 0 to 9 for gzip and estargz, 0 to 22
	// for zstd (mapped onto klauspost/compress's four speeds). The default
	// (nil) is the algorithm's default. Uncompressed layers have no level.
	Level *int
	// Force recompresses the base image's layers to Type too. The default
	// is to push them as they came. The build's own layers, new or reused
	// from the state dir's cache, get Type either way: a cached layer in
	// another compression is converted once and the result kept, so the
	// next build reuses it (whatever level it was made at).
	Force bool
}

// levels are the accepted level ranges, as BuildKit documents them for
// compression-level.
var levels = map[string][2]int{Gzip: {0, 9}, Estargz: {0, 9}, Zstd: {0, 22}}

// Validate checks c before a build starts; BuildKit would only refuse a bad
// level when it compresses the first layer, after the build.
func (c Compression) Validate() error {
	typ := c.Type
	switch typ {
	case "":
		typ = Gzip
	case Gzip, Zstd, Estargz, Uncompressed:
	default:
		return fmt.Errorf("%w %q (want %s, %s, %s or %s)", ErrCompressionType, c.Type, Gzip, Zstd, Estargz, Uncompressed)
	}
	if c.Level == nil {
		return nil
	}
	r, ok := levels[typ]
	if !ok {
		return fmt.Errorf("%w: %s layers have no level", ErrCompressionLevel, typ)
	}
	if l := *c.Level; l < r[0] || l > r[1] {
		return fmt.Errorf("%w %d for %s (want %d to %d)", ErrCompressionLevel, l, typ, r[0], r[1])
	}
	return nil
}

// attrs sets c's image exporter attributes.
func (c Compression) attrs(attrs map[string]string) {
	if c.Type != "" {
		attrs[string(exptypes.OptKeyLayerCompression)] = c.Type
	}
	if c.Level != nil {
		attrs[string(exptypes.OptKeyCompressionLevel)] = strconv.Itoa(*c.Level)
	}
	if c.Force {
		attrs[string(exptypes.OptKeyForceCompression)] = "true"
	}
}
