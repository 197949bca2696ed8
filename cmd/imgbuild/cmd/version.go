package cmd

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// version is set at link time (-X); otherwise it comes from build info.
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print imgbuild's version, the BuildKit it embeds and the runc it would use",
		Args:    cobra.NoArgs,
		Example: "  imgbuild version",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
			fmt.Fprintln(cmd.OutOrStdout(), runcLine(cmd.Context()))
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
				if d.Replace != nil {
					// make's builds: third_party/buildkit's patch.
					bk += ", patched for --executor inplace"
				}
			}
		}
	}
	return fmt.Sprintf("imgbuild %s (BuildKit %s)", v, bk)
}

// runcLine says which runc RUN steps would run with, and its version: `imgbuild
// version` only, since it runs runc.
func runcLine(ctx context.Context) string {
	path, err := sandbox.FindRunc("")
	if err != nil {
		return "runc: " + err.Error()
	}
	ver, warning, err := sandbox.CheckRunc(ctx, path, true)
	switch {
	case err != nil:
		return fmt.Sprintf("runc: %s: %v", path, err)
	case warning != "":
		return fmt.Sprintf("runc: %s (%s; refused without --allow-insecure-runc)", path, ver)
	}
	return fmt.Sprintf("runc: %s (%s)", path, ver)
}
