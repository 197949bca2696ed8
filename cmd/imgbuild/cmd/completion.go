package cmd

import (
	"slices"

	"github.com/spf13/cobra"
)

// flagValues are the values shell completion offers for the flags that
// take one of a few words; a command registers those of them it has.
var flagValues = map[string][]string{
	"progress":    {"auto", "tty", "plain", "rawjson", "quiet"},
	"output":      {"type=registry", "type=image,push=false", "type=oci,dest=", "type=oci,tar=false,dest=", "type=docker,dest=", "type=tar,dest=", "type=local,dest="},
	"executor":    {"auto", "runc", "runc-no-sandbox", "inplace"},
	"snapshotter": {"auto", "overlayfs", "fuse-overlayfs", "native"},
	"compression": {"gzip", "zstd", "estargz", "uncompressed"},
	"cache-to":    {"type=registry,ref=", "type=local,dest=", "type=inline"},
	"cache-from":  {"type=registry,ref=", "type=local,src="},
}

// registerCompletions offers flagValues for cmd's flags named (all when
// none is).
func registerCompletions(cmd *cobra.Command, names ...string) {
	for name, values := range flagValues {
		if cmd.Flags().Lookup(name) == nil || (len(names) > 0 && !slices.Contains(names, name)) {
			continue
		}
		// "output" values end in "=": no space after them.
		dir := cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, dir))
	}
}
