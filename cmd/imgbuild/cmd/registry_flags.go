package cmd

import (
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// registryFlags are the registry access flags shared by every command that
// pulls or pushes: one set of flags, applied to base-image pulls, cache
// import/export and pushes alike.
type registryFlags struct {
	insecure []string
}

func (r *registryFlags) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&r.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP or unverified TLS (repeatable)")
}

// registryOptions are the options for pushes.
func (r *registryFlags) registryOptions() (registry.Options, error) {
	return registry.Options{Insecure: r.insecure}, nil
}

// builderOptions are the options for pulls inside the build.
func (r *registryFlags) builderOptions() []builder.Option {
	return []builder.Option{builder.WithInsecureRegistries(r.insecure...)}
}
