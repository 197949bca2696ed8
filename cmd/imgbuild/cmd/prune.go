package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// stateFlags pick the state dir and how it is opened, for every command
// that opens one (build, executor, du, prune). They all run where build runs
// (in a user namespace when not root), so that they see its snapshotter and
// file owners: another view would drop its records.
type stateFlags struct {
	root        string
	runc        string
	snapshotter string
	wait        bool
	// executor is --executor (build and executor only); chosen is the rung
	// enterSandbox picked.
	executor string
	chosen   sandbox.Executor
}

// addExecutorFlag adds --executor, for the commands that run RUN steps.
func (s *stateFlags) addExecutorFlag(f *pflag.FlagSet) {
	f.StringVar(&s.executor, "executor", "auto", "how RUN steps run: auto (the strongest that works here), runc (own namespaces), runc-no-sandbox (own user namespace, this container's /proc and PID namespace), inplace (in this container's root filesystem, as kaniko: only in a container made for the build)")
}

func (s *stateFlags) addFlags(f *pflag.FlagSet) {
	s.addRootFlags(f)
	f.StringVar(&s.snapshotter, "snapshotter", "auto", "snapshotter: auto, overlayfs, fuse-overlayfs or native")
	f.BoolVar(&s.wait, "wait", false, waitHelp)
}

// addRootFlags adds --root and --runc only, for kaniko's executor.
func (s *stateFlags) addRootFlags(f *pflag.FlagSet) {
	f.StringVar(&s.root, "root", "", "state directory (default $IMGBUILD_ROOT, /var/lib/imgbuild as root, else $XDG_DATA_HOME/imgbuild)")
	f.StringVar(&s.runc, "runc", "", "runc binary (default: runc next to imgbuild, else on $PATH)")
}

// dir resolves --root.
func (s *stateFlags) dir() (statedir.Dir, error) {
	d, err := statedir.Resolve(s.root)
	if err != nil {
		return d, fmt.Errorf("--root: %w", err)
	}
	return d, nil
}

// waitHelp describes --wait: a process with the same worker settings joins
// the one holding the state dir (see builder's shared.go) whatever --wait says.
const waitHelp = "when another imgbuild holds the state directory with other settings (runc, snapshotter, registries, frontends), wait until it is done instead of failing at once; with the same settings this one joins it and shares its BuildKit, --wait or not"

// open opens the state dir with automatic GC off: a housekeeping command
// does exactly what it is asked.
func (s *stateFlags) open(ctx context.Context, ro *rootOptions) (*builder.Builder, error) {
	dir, err := s.dir()
	if err != nil {
		return nil, err
	}
	b, err := builder.New(ctx, dir,
		builder.WithRunc(s.runc),
		builder.WithSnapshotter(s.snapshotter),
		builder.WithWaitForLock(s.wait),
		builder.WithLogger(ro.log),
		builder.WithGC(statedir.GCConfig{Disabled: true}),
		builder.WithExecutor(s.chosen),
	)
	return b, stateDirHint(err, true)
}

type pruneOptions struct {
	state       stateFlags
	all         bool
	keepStorage string
	filters     []string
	verbose     bool
}

func newPruneCmd(ro *rootOptions) *cobra.Command {
	po := &pruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune [flags]",
		Short: "Remove build cache and old build results from the state directory",
		Long: `Remove unused build cache records and the image store's old build results.

Without flags, prune removes every unused build step result, keeping base
images and cache mounts; --all removes those too. --keep-storage removes the
least recently used records only until the cache fits the size given.`,
		Example: `  # Keep the cache under 5 GB
  imgbuild prune --keep-storage 5GB

  # Remove what was not used for a day
  imgbuild prune --filter until=24h

  # Remove everything
  imgbuild prune --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rerun, err := ro.enterSandbox(cmd, &po.state); rerun || err != nil {
				return err
			}
			return runPrune(cmd, ro, po)
		},
	}
	f := cmd.Flags()
	po.state.addFlags(f)
	f.BoolVarP(&po.all, "all", "a", false, "also remove base images, cache mounts and internal records")
	f.StringVar(&po.keepStorage, "keep-storage", "", `remove least recently used records until the cache is at most this size, e.g. "5GB"`)
	f.StringArrayVar(&po.filters, "filter", nil, `"until=DURATION" keeps records used within DURATION; other values are BuildKit filters, e.g. "type==exec.cachemount" (repeatable)`)
	f.BoolVarP(&po.verbose, "verbose", "v", false, "list every record removed")
	return cmd
}

// pruneRequest maps the flags onto statedir.PruneOptions.
func (po *pruneOptions) pruneRequest() (statedir.PruneOptions, error) {
	req := statedir.PruneOptions{All: po.all}
	if po.keepStorage != "" {
		n, err := statedir.ParseSize(po.keepStorage)
		if err != nil {
			return req, fmt.Errorf("--keep-storage: %w", err)
		}
		req.KeepStorage = n
	}
	for _, f := range po.filters {
		if v, ok := strings.CutPrefix(f, "until="); ok {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return req, fmt.Errorf("--filter %q: want until=DURATION, e.g. until=24h", f)
			}
			req.KeepDuration = d
			continue
		}
		req.Filters = append(req.Filters, f)
	}
	return req, nil
}

func runPrune(cmd *cobra.Command, ro *rootOptions, po *pruneOptions) (err error) {
	req, err := po.pruneRequest()
	if err != nil {
		return err
	}
	b, err := po.state.open(cmd.Context(), ro)
	if err != nil {
		return err
	}
	defer closeBuilder(b, &err)
	removed, imageBytes, err := b.Prune(cmd.Context(), req)
	out := cmd.OutOrStdout()
	var total int64
	for _, r := range removed {
		total += r.Size
		if po.verbose {
			fmt.Fprintf(out, "%s\t%s\t%s\n", shortID(r.ID), units.HumanSize(float64(r.Size)), r.Description)
		}
	}
	fmt.Fprintf(out, "Removed %d build cache records: %s\n", len(removed), units.HumanSize(float64(total)))
	fmt.Fprintf(out, "Removed from the image store and set-aside databases: %s\n", units.HumanSize(float64(imageBytes)))
	return err
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// writeTable writes rows with columns aligned by tabwriter-like padding.
func writeTable(w io.Writer, rows [][]string) {
	widths := map[int]int{}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			fmt.Fprintf(&b, "%-*s  ", widths[i], c)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
