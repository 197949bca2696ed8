package cmd

import (
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
)

// cacheFlags are the build cache flags.
type cacheFlags struct{}

func (c *cacheFlags) addFlags(*pflag.FlagSet) {}

// apply sets the cache imports and exports of a build request.
func (c *cacheFlags) apply(*builder.Request) error { return nil }

// builderOptions are the state dir's cache settings.
func (c *cacheFlags) builderOptions() []builder.Option { return nil }
