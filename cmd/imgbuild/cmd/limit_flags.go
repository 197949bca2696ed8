package cmd

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// limitFlags bound what a pulled image may make the build fetch and unpack
// (see builder.Limits). Each takes a size ("10GB", binary units as in
// --gc-keep-storage) or a count, or "off".
type limitFlags struct {
	layerSize, imageSize, manifestSize, configSize, layers string
}

// limitFlagNames maps each limit to its flag, for errors.
var limitFlagNames = map[builder.LimitKind]string{
	builder.LimitLayerSize:    "--max-layer-size",
	builder.LimitImageSize:    "--max-image-size",
	builder.LimitManifestSize: "--max-manifest-size",
	builder.LimitConfigSize:   "--max-config-size",
	builder.LimitLayers:       "--max-layers",
}

func (l *limitFlags) addFlags(f *pflag.FlagSet) {
	d := builder.DefaultLimits
	size := func(n int64) string { return units.BytesSize(float64(n)) }
	f.StringVar(&l.layerSize, "max-layer-size", "", fmt.Sprintf(`refuse a pulled layer whose uncompressed size is over SIZE; "off" disables (default %s)`, size(d.LayerSize)))
	f.StringVar(&l.imageSize, "max-image-size", "", fmt.Sprintf(`refuse a pulled image whose layers together are over SIZE uncompressed; "off" disables (default %s)`, size(d.ImageSize)))
	f.StringVar(&l.manifestSize, "max-manifest-size", "", fmt.Sprintf(`refuse a pulled manifest or index over SIZE; "off" disables (default %s)`, size(d.ManifestSize)))
	f.StringVar(&l.configSize, "max-config-size", "", fmt.Sprintf(`refuse a pulled image config over SIZE; "off" disables (default %s)`, size(d.ConfigSize)))
	f.StringVar(&l.layers, "max-layers", "", fmt.Sprintf(`refuse a pulled image with more than N layers; "off" disables (default %d)`, d.Layers))
}

// limits parses the flags.
func (l *limitFlags) limits() (builder.Limits, error) {
	var out builder.Limits
	for _, f := range []struct {
		flag  string
		in    string
		count bool
		dst   *int64
	}{
		{"--max-layer-size", l.layerSize, false, &out.LayerSize},
		{"--max-image-size", l.imageSize, false, &out.ImageSize},
		{"--max-manifest-size", l.manifestSize, false, &out.ManifestSize},
		{"--max-config-size", l.configSize, false, &out.ConfigSize},
		{"--max-layers", l.layers, true, &out.Layers},
	} {
		v := strings.TrimSpace(f.in)
		switch v {
		case "":
			continue
		case "off":
			*f.dst = builder.NoLimit
			continue
		}
		var n int64
		var err error
		if f.count {
			n, err = strconv.ParseInt(v, 10, 64)
		} else {
			n, err = statedir.ParseSize(v)
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", f.flag, err)
		}
		if n <= 0 {
			return out, fmt.Errorf("%s %s: want a positive value, or \"off\" to disable the limit", f.flag, v)
		}
		*f.dst = n
	}
	return out, nil
}
