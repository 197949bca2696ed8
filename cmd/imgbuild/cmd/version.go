package cmd

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time (-X); otherwise it comes from build info.
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print imgbuild's version and the BuildKit version it embeds",
		Args:    cobra.NoArgs,
		Example: "  imgbuild version",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return nil
		},
	}
}

// versionString is `imgbuild version`'s line, also printed by --version.
func versionString() string {
	v, bk := version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/moby/buildkit" {
				bk = d.Version
			}
		}
	}
	return fmt.Sprintf("imgbuild %s (BuildKit %s)", v, bk)
}
