package cmd

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/docker/go-units"
	"github.com/spf13/pflag"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/registry"
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
	// Bounds on the cache mounts carried, as the limit flags take them.
	mountMaxSize, mountsMaxSize string
}

func (c *cacheFlags) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.from, "cache-from", nil, `cache source "type=registry,ref=REF" or "type=local,src=DIR"; a bare REF means type=registry (repeatable)`)
	f.StringVar(&c.mountsFrom, "cache-mounts-from", "", `start RUN --mount=type=cache mounts the state dir lacks from the contents saved by --cache-mounts-to: "type=registry,ref=REF", "type=local,src=DIR" or DIR`)
	f.StringVar(&c.mountsTo, "cache-mounts-to", "", `save the contents of RUN --mount=type=cache mounts when the build ends: "type=registry,ref=REF" (an OCI artifact, one zstd layer per mount), "type=local,dest=DIR" or DIR`)
	f.StringVar(&c.mountMaxSize, "max-cache-mount-size", "", fmt.Sprintf(`leave out of --cache-mounts-to/--cache-mounts-from, with a warning, a cache mount whose files are over SIZE; "off" disables (default %s)`, units.BytesSize(builder.DefaultCacheMountSize)))
	f.StringVar(&c.mountsMaxSize, "max-cache-mounts-size", "", fmt.Sprintf(`bound the cache mounts carried together (most recently used first) to SIZE, leaving out the rest with a warning; "off" disables (default %s)`, units.BytesSize(builder.DefaultCacheMountsSize)))
	f.StringVar(&c.gcKeepStorage, "gc-keep-storage", "", `after the build, trim the state dir's build cache to this size, e.g. "10GB"; "off" disables (default: 10% of the disk, 2 GB to 20 GB)`)
	f.StringArrayVar(&c.to, "cache-to", nil, `cache destination "type=registry,ref=REF[,mode=min|max]", "type=local,dest=DIR[,mode=min|max]" or "type=inline" (repeatable)`)
}

// apply sets the cache imports and exports of a build request and checks
// the GC and cache mount flags.
func (c *cacheFlags) apply(req *builder.Request, insecure []string) error {
	if _, err := c.gcConfig(); err != nil {
		return err
	}
	if _, err := c.cacheMounts(insecure); err != nil {
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
func (c *cacheFlags) builderOptions(insecure []string) ([]builder.Option, error) {
	gc, err := c.gcConfig()
	if err != nil {
		return nil, err
	}
	cm, err := c.cacheMounts(insecure)
	if err != nil {
		return nil, err
	}
	return []builder.Option{builder.WithGC(gc), builder.WithCacheMounts(cm)}, nil
}

// cacheMounts parses the --cache-mounts-* and cache mount bound flags.
func (c *cacheFlags) cacheMounts(insecure []string) (builder.CacheMounts, error) {
	var cm builder.CacheMounts
	var err error
	if cm.From, err = parseCacheMountsStore(c.mountsFrom, false, insecure); err != nil {
		return cm, fmt.Errorf("--cache-mounts-from %q: %w", c.mountsFrom, err)
	}
	if cm.To, err = parseCacheMountsStore(c.mountsTo, true, insecure); err != nil {
		return cm, fmt.Errorf("--cache-mounts-to %q: %w", c.mountsTo, err)
	}
	for _, f := range []struct {
		flag, in string
		dst      *int64
	}{
		{"--max-cache-mount-size", c.mountMaxSize, &cm.MaxMountSize},
		{"--max-cache-mounts-size", c.mountsMaxSize, &cm.MaxSize},
	} {
		v := strings.TrimSpace(f.in)
		switch v {
		case "":
			continue
		case "off":
			*f.dst = builder.NoLimit
			continue
		}
		n, err := statedir.ParseSize(v)
		if err != nil {
			return cm, fmt.Errorf("%s: %w", f.flag, err)
		}
		if n <= 0 {
			return cm, fmt.Errorf("%s %s: want a positive size, or \"off\" to disable the bound", f.flag, v)
		}
		*f.dst = n
	}
	return cm, nil
}

// flagError names the --cache-mounts-* flag at fault in a build error.
func (c *cacheFlags) flagError(err error) error {
	var cme *builder.CacheMountsError
	if !errors.As(err, &cme) {
		return err
	}
	if cme.Export {
		return fmt.Errorf("--cache-mounts-to %q: %w", c.mountsTo, err)
	}
	return fmt.Errorf("--cache-mounts-from %q: %w", c.mountsFrom, err)
}

// parseCacheMountsStore parses a --cache-mounts-from (src=) or
// --cache-mounts-to (dest=) value. A value without a type= field is a
// directory, as before the registry form existed.
func parseCacheMountsStore(s string, export bool, insecure []string) (builder.CacheMountsStore, error) {
	var st builder.CacheMountsStore
	if s == "" {
		return st, nil
	}
	fields, err := csvvalue.Fields(s, nil)
	if err != nil || !slices.ContainsFunc(fields, func(f string) bool { return strings.HasPrefix(strings.TrimSpace(f), "type=") }) {
		st.Dir = s
		return st, nil
	}
	dirKey := "src"
	if export {
		dirKey = "dest"
	}
	kv := map[string]string{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return st, fmt.Errorf("want key=value, got %q", f)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := kv[k]; dup {
			return st, fmt.Errorf("%s= given twice", k)
		}
		kv[k] = v
	}
	want := map[string]string{"registry": "ref", "local": dirKey}[kv["type"]]
	if want == "" {
		return st, fmt.Errorf("unknown type %q (want registry or local)", kv["type"])
	}
	for k := range kv {
		if k != "type" && k != want {
			return st, fmt.Errorf("key %q does not apply to type=%s (it takes %s=)", k, kv["type"], want)
		}
	}
	v := kv[want]
	if v == "" {
		return st, fmt.Errorf("type=%s needs %s=", kv["type"], want)
	}
	if want == "ref" {
		if _, err := registry.ParseReference(v, insecure); err != nil {
			return st, fmt.Errorf("ref=%s: %w", v, err)
		}
		st.Ref = v
		return st, nil
	}
	st.Dir = v
	return st, nil
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
