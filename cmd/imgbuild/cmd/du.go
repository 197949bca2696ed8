package cmd

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/statedir"
)

type duOptions struct {
	state   stateFlags
	verbose bool
	format  string
}

func newDuCmd(ro *rootOptions) *cobra.Command {
	do := &duOptions{}
	cmd := &cobra.Command{
		Use:   "du [flags]",
		Short: "Show what the state directory caches and how big it is",
		Long: `List the build cache's records (build steps, base image layers, cache
mounts, build contexts): size, last use and whether they can be reclaimed,
with totals, plus the image store of recent build results.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The state dir must be seen as build sees it (see stateFlags).
			if rerun, err := ro.enterSandbox(cmd, &do.state); rerun || err != nil {
				return err
			}
			return runDu(cmd, ro, do)
		},
	}
	f := cmd.Flags()
	do.state.addFlags(f)
	f.BoolVarP(&do.verbose, "verbose", "v", false, "list every record, not only the totals")
	f.StringVar(&do.format, "format", "table", "output format: table or json")
	return cmd
}

// duReport is `imgbuild du --format json`.
type duReport struct {
	Records     []statedir.UsageRecord `json:"records"`
	Total       int64                  `json:"total"`
	Reclaimable int64                  `json:"reclaimable"`
	ImageStore  int64                  `json:"imageStore"`
}

func runDu(cmd *cobra.Command, ro *rootOptions, do *duOptions) (err error) {
	if do.format != "table" && do.format != "json" {
		return fmt.Errorf("--format %q: want table or json", do.format)
	}
	b, err := do.state.open(cmd.Context(), ro)
	if err != nil {
		return err
	}
	defer closeBuilder(b, &err)
	recs, err := b.DiskUsage(cmd.Context())
	if err != nil {
		return err
	}
	// Most recently used first: what a user looks at when deciding what
	// to prune.
	slices.SortFunc(recs, func(a, b statedir.UsageRecord) int { return b.LastUsedAt.Compare(a.LastUsedAt) })
	rep := duReport{Records: recs, ImageStore: b.Dir().ImageStoreSize()}
	for _, r := range recs {
		if r.Shared {
			// Shared records are counted once, by their owner.
			continue
		}
		rep.Total += r.Size
		if !r.InUse {
			rep.Reclaimable += r.Size
		}
	}
	out := cmd.OutOrStdout()
	if do.format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if do.verbose {
		rows := [][]string{{"ID", "TYPE", "SIZE", "RECLAIMABLE", "LAST USED", "USES", "DESCRIPTION"}}
		for _, r := range recs {
			rows = append(rows, []string{shortID(r.ID), cmp.Or(r.Type, "-"), units.HumanSize(float64(r.Size)),
				strconv.FormatBool(!r.InUse), lastUsed(r.LastUsedAt), strconv.Itoa(r.UsageCount), r.Description})
		}
		writeTable(out, rows)
		fmt.Fprintln(out)
	}
	writeTable(out, [][]string{
		{"Build cache records:", strconv.Itoa(len(recs))},
		{"Build cache total:", units.HumanSize(float64(rep.Total))},
		{"Reclaimable:", units.HumanSize(float64(rep.Reclaimable))},
		{"Image store:", units.HumanSize(float64(rep.ImageStore))},
	})
	return nil
}

func lastUsed(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}
