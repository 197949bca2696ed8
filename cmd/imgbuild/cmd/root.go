// Package cmd is imgbuild's command tree: cobra wiring and the one place where
// flags become library options.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// rootOptions are the flags every command shares.
type rootOptions struct {
	logLevel  string
	logFormat string
	// args are the command line, re-run as is in a user namespace.
	args []string
	// log is imgbuild's own logger. BuildKit logs through logrus's standard
	// logger, which stays at warn unless --log-level asks for debug.
	log *logrus.Logger
}

// NewRootCmd returns a fresh command tree.
func NewRootCmd() *cobra.Command { return newRootCmd(nil) }

func newRootCmd(args []string) *cobra.Command {
	ro := &rootOptions{log: logrus.New(), args: args}
	root := &cobra.Command{
		Use:               "imgbuild",
		Short:             "Build OCI images from Dockerfiles, without a daemon",
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
		// --version prints what `imgbuild version` does.
		Version: versionString(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return ro.setupLogging(cmd.ErrOrStderr())
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&ro.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	root.PersistentFlags().StringVar(&ro.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(newBuildCmd(ro), newExecutorCmd(ro), newBuildctlCmd(ro), newRegistryCmd(), newVersionCmd(), newPruneCmd(ro), newDuCmd(ro), newLoginCmd(), newLogoutCmd(), newImagetoolsCmd())
	return root
}

// Execute runs the command line args with the process's standard streams
// and returns the exit code.
func Execute(ctx context.Context, args []string) int {
	return execute(ctx, args, os.Stdin, os.Stdout, os.Stderr)
}

func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(args)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		// The error was reported already (by a re-executed child).
		return ee.code
	}
	printError(stderr, err)
	if ee != nil {
		return ee.code
	}
	return 1
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func printError(w io.Writer, err error) {
	var be *builder.BuildError
	if errors.As(err, &be) && be.Snippet != "" {
		fmt.Fprint(w, be.Snippet)
	}
	msg := err.Error()
	if be != nil {
		msg = be.Message
		if f, ok := limitFlagNames[be.Limit]; ok {
			msg += " (change it with " + f + ")"
		}
	}
	fmt.Fprintf(w, "ERROR: %s\n", msg)
}

func (ro *rootOptions) setupLogging(w io.Writer) error {
	lvl, err := logrus.ParseLevel(ro.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	var f logrus.Formatter
	switch strings.ToLower(ro.logFormat) {
	case "text", "":
		f = &logrus.TextFormatter{DisableTimestamp: lvl < logrus.DebugLevel, FullTimestamp: true}
	case "json":
		f = &logrus.JSONFormatter{}
	default:
		return fmt.Errorf("--log-format %q: want text or json", ro.logFormat)
	}
	ro.log.SetOutput(w)
	ro.log.SetLevel(lvl)
	ro.log.SetFormatter(f)
	routeRegistryLogs(ro.log)

	// BuildKit's own logs: warnings and worse unless the user asked for
	// debug, minus the warning it prints on every build for lack of a
	// tracing backend.
	std := logrus.StandardLogger()
	std.SetOutput(w)
	if lvl >= logrus.DebugLevel {
		std.SetLevel(lvl)
	} else {
		std.SetLevel(min(lvl, logrus.WarnLevel))
	}
	std.SetFormatter(&quietFormatter{Formatter: f, debug: lvl >= logrus.DebugLevel})
	return nil
}

// quietFormatter drops BuildKit messages that say nothing to a user.
type quietFormatter struct {
	logrus.Formatter
	debug bool
}

// noise are BuildKit's log lines that are housekeeping here, shown only at
// the debug level: a build record whose blobs a GC took, an OOM counter that
// a cgroup without memory events lacks.
var noise = []string{"no trace recorder found", "failed check for fsverity support", "git source cannot be enabled",
	"deleting build record ", "failed to read oom_kill event"}

func (q *quietFormatter) Format(e *logrus.Entry) ([]byte, error) {
	if !q.debug {
		for _, n := range noise {
			if strings.HasPrefix(e.Message, n) {
				return nil, nil
			}
		}
	}
	return q.Formatter.Format(e)
}

// enterSandbox picks the executor rung (see sandbox.ChooseExecutor) for a
// command that opens the state dir, says which in one line when it is not
// the plain default, and runs the command again in a user namespace when
// the rung needs one: rerun is then set and the command is done.
func (ro *rootOptions) enterSandbox(cmd *cobra.Command, state *stateFlags) (rerun bool, err error) {
	want, err := sandbox.ParseExecutor(state.executor)
	if err != nil {
		return false, fmt.Errorf("--executor: %w", err)
	}
	choice, err := sandbox.ChooseExecutor(want)
	if err != nil {
		return false, err
	}
	state.chosen = choice.Executor
	if state.executor != "" && !choice.Pinned {
		if choice.Executor == sandbox.Runc {
			ro.log.Debug(choice.Line())
		} else {
			ro.log.Info(choice.Line())
		}
	}
	// RUN steps of the lower rungs share this process's PID namespace, or
	// its container.
	hide := choice.Executor != sandbox.Runc
	if !choice.UserNamespace || !sandbox.NeedsUserNamespace() {
		if hide {
			if err := sandbox.HideFromSteps(); err != nil {
				return false, fmt.Errorf("hiding this process from RUN steps: %w", err)
			}
		}
		return false, nil
	}
	return true, ro.rerunRootless(cmd, *state, choice, hide)
}

// rerunRootless runs this command line again in a user namespace where
// imgbuild is root (see sandbox.RunInUserNamespace) and returns its exit
// status. The state dir is resolved here, as the unprivileged user, and
// handed down: inside, the euid is 0.
func (ro *rootOptions) rerunRootless(cmd *cobra.Command, state stateFlags, choice sandbox.Choice, hide bool) error {
	dir, err := state.dir()
	if err != nil {
		return err
	}
	// Inside, this user is uid 0 of the namespace, and a state dir of
	// another user's fails deep in BuildKit: say so here.
	if err := unix.Access(dir.Path(), unix.W_OK|unix.X_OK); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("state dir %s is not writable by uid %d (%w): give one of yours with --root or $%s", dir.Path(), os.Geteuid(), err, statedir.EnvRoot)
	}
	env := append(os.Environ(), statedir.EnvRoot+"="+dir.Path(), sandbox.PinExecutor(choice))
	ro.log.Debugf("not root: re-running in a user namespace (state dir %s)", dir)
	code, err := sandbox.RunInUserNamespace(cmd.Context(), ro.args, env, hide, func(note string) { ro.log.Warn(note) })
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// insecureRuncHint adds to a refused runc (see sandbox.ErrInsecureRunc) the
// flag that overrides the refusal, when the command has it (overrideFlag).
func insecureRuncHint(err error, overrideFlag bool) error {
	if !overrideFlag || !errors.Is(err, sandbox.ErrInsecureRunc) {
		return err
	}
	return fmt.Errorf("%w, or pass --allow-insecure-runc to use it anyway", err)
}

// stateDirHint adds to a state dir refused for another view of its build
// cache (see builder.StateMismatchError) the flags that fix it; the command
// has a --snapshotter flag when snapshotterFlag is set.
func stateDirHint(err error, snapshotterFlag bool) error {
	var inUse *statedir.InUseError
	if errors.As(err, &inUse) {
		return fmt.Errorf("%w; use another --root or wait for it with --wait", err)
	}
	var me *builder.StateMismatchError
	if !errors.As(err, &me) {
		return err
	}
	var fixes []string
	switch {
	case me.Snapshotter == "" && snapshotterFlag:
		fixes = append(fixes, fmt.Sprintf("pass --snapshotter with the one whose build cache to keep (%s)", strings.Join(me.Found, " or ")))
	case me.Snapshotter != "" && me.Rootless != me.WantRootless:
		fix := "run imgbuild as root"
		if me.Rootless {
			fix = "run imgbuild rootless, as the user that made it"
		}
		if me.Snapshotter != me.WantSnapshotter && snapshotterFlag {
			fix += " with --snapshotter " + me.Snapshotter
		}
		fixes = append(fixes, fix)
	case me.Snapshotter != "" && snapshotterFlag:
		fixes = append(fixes, "pass --snapshotter "+me.Snapshotter)
	}
	fixes = append(fixes, "use another --root")
	return fmt.Errorf("%w\nto fix: %s", err, strings.Join(fixes, ", or "))
}

// closeBuilder closes b when a command is done with it and reports a failure
// to close (the state dir's databases, its lock) unless the command failed
// already.
func closeBuilder(b *builder.Builder, err *error) {
	if cerr := b.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("closing the state dir %s: %w", b.Dir(), cerr)
	}
}
