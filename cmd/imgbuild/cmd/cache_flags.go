package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// cacheFlags are the build cache flags: registry/local/inline cache import
// and export, as in `docker buildx build`.
type cacheFlags struct {
	from          []string
	to            []string
	gcKeepStorage string
	mountsFrom    string
	mountsTo      string
}

func (c *cacheFlags) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.from, "cache-from", nil, `cache source "type=registry,ref=REF" or "type=local,src=DIR"; a bare REF means type=registry (repeatable)`)
	f.StringVar(&c.mountsFrom, "cache-mounts-from", "", "start RUN --mount=type=cache mounts from the contents saved in DIR (by --cache-mounts-to) when the state dir lacks them")
	f.StringVar(&c.mountsTo, "cache-mounts-to", "", "save the contents of RUN --mount=type=cache mounts to DIR when the build ends")
	f.StringVar(&c.gcKeepStorage, "gc-keep-storage", "", `after the build, trim the state dir's build cache to this size, e.g. "10GB"; "off" disables (default: 10% of the disk, 2 GB to 20 GB)`)
	f.StringArrayVar(&c.to, "cache-to", nil, `cache destination "type=registry,ref=REF[,mode=min|max]", "type=local,dest=DIR[,mode=min|max]" or "type=inline" (repeatable)`)
}

// apply sets the cache imports and exports of a build request and checks
// the GC flags.
func (c *cacheFlags) apply(req *builder.Request) error {
	if _, err := c.gcConfig(); err != nil {
		return err
	}
	for _, s := range c.from {
		e, err := parseCacheEntry(s, false)
		if err != nil {
			return fmt.Errorf("--cache-from %q: %w", s, err)
		}
		req.CacheImports = append(req.CacheImports, e)
	}
	for _, s := range c.to {
		e, err := parseCacheEntry(s, true)
		if err != nil {
			return fmt.Errorf("--cache-to %q: %w", s, err)
		}
		req.CacheExports = append(req.CacheExports, e)
	}
	return nil
}

// gcConfig maps --gc-keep-storage onto the GC policy.
func (c *cacheFlags) gcConfig() (statedir.GCConfig, error) {
	switch c.gcKeepStorage {
	case "":
		return statedir.GCConfig{}, nil
	case "off":
		return statedir.GCConfig{Disabled: true}, nil
	}
	n, err := statedir.ParseSize(c.gcKeepStorage)
	if err != nil {
		return statedir.GCConfig{}, fmt.Errorf("--gc-keep-storage: %w", err)
	}
	if n == 0 {
		return statedir.GCConfig{}, fmt.Errorf("--gc-keep-storage 0: use \"off\" to disable GC")
	}
	return statedir.GCConfig{MaxUsed: n}, nil
}

// builderOptions are the state dir's cache settings.
func (c *cacheFlags) builderOptions() ([]builder.Option, error) {
	gc, err := c.gcConfig()
	if err != nil {
		return nil, err
	}
	return []builder.Option{builder.WithGC(gc), builder.WithCacheMounts(c.mountsFrom, c.mountsTo)}, nil
}

// parseCacheEntry parses one buildx-style --cache-from/--cache-to value and
// checks it before any work starts, so that a typo fails fast instead of
// after a long build.
func parseCacheEntry(s string, export bool) (builder.CacheEntry, error) {
	e := builder.CacheEntry{Attrs: map[string]string{}}
	if !strings.Contains(s, "=") {
		// buildx shorthand: a bare reference is a registry cache.
		e.Type, e.Attrs["ref"] = "registry", s
	} else {
		fields, err := csvvalue.Fields(s, nil)
		if err != nil {
			return e, err
		}
		for _, f := range fields {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return e, fmt.Errorf("want key=value, got %q", f)
			}
			k = strings.ToLower(strings.TrimSpace(k))
			if k == "type" {
				e.Type = v
				continue
			}
			e.Attrs[k] = v
		}
	}
	switch e.Type {
	case "registry":
		if e.Attrs["ref"] == "" {
			return e, fmt.Errorf("type=registry needs ref=")
		}
		if export {
			// An OCI image manifest rather than an index: the format ECR
			// and other registries that reject cache indexes accept.
			setDefault(e.Attrs, "image-manifest", "true")
			setDefault(e.Attrs, "oci-mediatypes", "true")
		}
	case "local":
		key := "src"
		if export {
			key = "dest"
		}
		if e.Attrs[key] == "" {
			return e, fmt.Errorf("type=local needs %s=", key)
		}
	case "inline":
		if !export {
			return e, fmt.Errorf("type=inline is export only; import an inline cache with type=registry,ref=IMAGE")
		}
	case "":
		return e, fmt.Errorf("missing type=")
	default:
		return e, fmt.Errorf("unknown type %q (want registry, local or inline)", e.Type)
	}
	if export {
		setDefault(e.Attrs, "mode", "min")
		if m := e.Attrs["mode"]; m != "min" && m != "max" {
			return e, fmt.Errorf("mode=%s: want min or max", m)
		}
	}
	return e, nil
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}
