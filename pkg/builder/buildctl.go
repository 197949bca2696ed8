package builder

import (
	"fmt"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildctl/build"
	"github.com/moby/buildkit/util/appdefaults"
)

// buildctl's own parsers, for imgbuild's buildctl-compatible command: the
// values mean what they mean to buildctl because buildctl's code reads them.
// BuildKit stays behind this package (see internal/archtest), so the command
// reaches them through these wrappers.

// BuildctlDefaultAddr is buildctl's default --addr, buildkitd's socket.
const BuildctlDefaultAddr = appdefaults.Address

// ParseFrontendOpts parses buildctl's --opt values (KEY=VALUE) into the
// frontend's attributes, as buildctl does: a bare "build-arg:NAME" takes
// NAME's value from the environment (and is left out when unset), and
// SOURCE_DATE_EPOCH in the environment becomes build-arg:SOURCE_DATE_EPOCH.
// Each value is checked on its own first, so that an error names it.
func ParseFrontendOpts(opts []string) (map[string]string, error) {
	for _, o := range opts {
		if _, err := build.ParseOpt([]string{o}); err != nil {
			return nil, fmt.Errorf("%q: want KEY=VALUE", o)
		}
	}
	return build.ParseOpt(opts)
}

// ParseCacheImports parses buildctl's --import-cache values
// ("type=registry,ref=REF", "type=local,src=DIR", a bare REF, …). An error
// names the value at fault.
func ParseCacheImports(values []string) ([]CacheEntry, error) {
	return parseCache(values, build.ParseImportCache)
}

// ParseCacheExports parses buildctl's --export-cache values
// ("type=registry,ref=REF[,mode=max]", "type=local,dest=DIR",
// "type=inline", a bare REF, …); mode defaults to min, as in buildctl. An
// error names the value at fault.
func ParseCacheExports(values []string) ([]CacheEntry, error) {
	return parseCache(values, build.ParseExportCache)
}

func parseCache(values []string, parse func([]string) ([]client.CacheOptionsEntry, error)) ([]CacheEntry, error) {
	var out []CacheEntry
	for _, v := range values {
		es, err := parse([]string{v})
		if err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		for _, e := range es {
			out = append(out, CacheEntry{Type: e.Type, Attrs: e.Attrs})
		}
	}
	return out, nil
}

// IsBuiltinFrontend reports whether a frontend image reference names the
// official Dockerfile frontend (docker/dockerfile with any tag or digest),
// which the compiled-in frontend stands in for.
func IsBuiltinFrontend(ref string) bool { return isBuiltinFrontend(ref) }
