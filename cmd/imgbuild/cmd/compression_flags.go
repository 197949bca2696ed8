package cmd

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
)

// compressionFlags are the layer compression flags, named after buildx's
// image output attributes compression=, compression-level= and
// force-compression=.
type compressionFlags struct {
	typ   string
	level optionalInt
	force bool
}

func (c *compressionFlags) addFlags(f *pflag.FlagSet) {
	f.StringVar(&c.typ, "compression", builder.Gzip, "layer compression: gzip, zstd, estargz or uncompressed, for every layer the build makes or reuses from the state dir's cache (a cached layer in another compression is converted once, then kept); base image layers stay as they came")
	f.Var(&c.level, "compression-level", "compression level: 0 to 9 for gzip, 0 to 22 for zstd (default: the algorithm's)")
	f.BoolVar(&c.force, "force-compression", false, "also recompress the base image's layers to --compression")
}

// apply checks the flags and sets the request's layer compression.
func (c *compressionFlags) apply(req *builder.Request) error {
	comp := builder.Compression{Type: c.typ, Level: c.level.v, Force: c.force}
	if err := comp.Validate(); err != nil {
		flag := "--compression"
		if errors.Is(err, builder.ErrCompressionLevel) {
			flag = "--compression-level"
		}
		return fmt.Errorf("%s: %w", flag, err)
	}
	req.Compression = comp
	return nil
}

// optionalInt is an int flag that tells "not set" from 0.
type optionalInt struct{ v *int }

// Set implements pflag.Value.
func (o *optionalInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("want an integer")
	}
	o.v = &n
	return nil
}

// String implements pflag.Value.
func (o *optionalInt) String() string {
	if o.v == nil {
		return ""
	}
	return strconv.Itoa(*o.v)
}

// Type implements pflag.Value.
func (o *optionalInt) Type() string { return "int" }
