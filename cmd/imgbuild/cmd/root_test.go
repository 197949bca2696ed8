package cmd

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// TestStateDirHint: a refused state dir's error ends with the flags that
// fix it, and only flags the command has.
func TestStateDirHint(t *testing.T) {
	for _, tc := range []struct {
		name            string
		err             builder.StateMismatchError
		snapshotterFlag bool
		want            string
	}{
		{"snapshotter", builder.StateMismatchError{Snapshotter: "native", WantSnapshotter: "overlayfs"}, true,
			"to fix: pass --snapshotter native, or use another --root"},
		{"executor", builder.StateMismatchError{Snapshotter: "native", WantSnapshotter: "overlayfs"}, false,
			"to fix: use another --root"},
		{"made rootless", builder.StateMismatchError{Snapshotter: "overlayfs", Rootless: true, WantSnapshotter: "overlayfs"}, true,
			"to fix: run imgbuild rootless, as the user that made it, or use another --root"},
		{"made as root", builder.StateMismatchError{Snapshotter: "overlayfs", WantSnapshotter: "native", WantRootless: true}, true,
			"to fix: run imgbuild as root with --snapshotter overlayfs, or use another --root"},
		{"several", builder.StateMismatchError{Found: []string{"native", "overlayfs"}, WantSnapshotter: "overlayfs"}, true,
			"to fix: pass --snapshotter with the one whose build cache to keep (native or overlayfs), or use another --root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			me := tc.err
			err := stateDirHint(fmt.Errorf("starting: %w", &me), tc.snapshotterFlag)
			if !strings.HasSuffix(err.Error(), "\n"+tc.want) {
				t.Errorf("got %q, want it to end with %q", err, tc.want)
			}
			if !errors.Is(err, &me) {
				t.Error("the hint does not wrap the error")
			}
		})
	}
	inUse := stateDirHint(fmt.Errorf("opening: %w", &statedir.InUseError{Dir: "/s", Holder: statedir.Holder{PID: 7}}), true)
	if want := "use another --root or wait for it with --wait"; !strings.HasSuffix(inUse.Error(), want) || !errors.Is(inUse, statedir.ErrInUse) {
		t.Errorf("a state dir in use: got %q, want it to end with %q and wrap ErrInUse", inUse, want)
	}
	plain := errors.New("other")
	if got := stateDirHint(plain, true); got != plain { //nolint:errorlint // the very same error comes back
		t.Errorf("another error became %v", got)
	}
	if stateDirHint(nil, true) != nil {
		t.Error("nil became an error")
	}
}

// TestInsecureRuncHint: a refused runc's error, which names no flag in
// package sandbox, ends with the flag that overrides it, only on a command
// that has the flag.
func TestInsecureRuncHint(t *testing.T) {
	refused := fmt.Errorf("%w: runc 1.1.5 at /bin/runc lacks the fixes; run `make runc` to build a fixed runc into bin/runc", sandbox.ErrInsecureRunc)
	err := insecureRuncHint(fmt.Errorf("starting: %w", refused), true)
	want := "starting: " + refused.Error() + ", or pass --allow-insecure-runc to use it anyway"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if !errors.Is(err, sandbox.ErrInsecureRunc) {
		t.Error("the hint does not wrap the error")
	}
	if got := insecureRuncHint(refused, false); got != refused { //nolint:errorlint // the very same error comes back
		t.Errorf("without the flag the error became %v", got)
	}
	plain := errors.New("other")
	if got := insecureRuncHint(plain, true); got != plain { //nolint:errorlint // the very same error comes back
		t.Errorf("another error became %v", got)
	}
	if insecureRuncHint(nil, true) != nil {
		t.Error("nil became an error")
	}
}

// TestVersionFlag: `imgbuild --version` prints the first line of `imgbuild
// version`, which then names the runc in use.
func TestVersionFlag(t *testing.T) {
	want := run(t, "", "version")
	if want.code != 0 || !strings.HasPrefix(want.stdout, "imgbuild ") {
		t.Fatalf("imgbuild version: exit %d, stdout %q", want.code, want.stdout)
	}
	first, second, _ := strings.Cut(want.stdout, "\n")
	if !strings.HasPrefix(second, "runc: ") {
		t.Errorf("imgbuild version's second line = %q, want the runc in use", second)
	}
	want.stdout = first + "\n"
	got := run(t, "", "--version")
	if got.code != 0 || got.stdout != want.stdout {
		t.Errorf("imgbuild --version: exit %d, stdout %q; want exit 0, stdout %q", got.code, got.stdout, want.stdout)
	}
}

// TestFlagValueCompletion: shell completion offers the values of the flags
// that take one of a few words.
func TestFlagValueCompletion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"build", "--progress", ""}, []string{"plain", "rawjson", "quiet"}},
		{[]string{"build", "-o", ""}, []string{"type=registry", "type=oci,dest=", "type=local,dest="}},
		{[]string{"build", "--executor", ""}, []string{"runc-no-sandbox", "inplace"}},
		{[]string{"build", "--compression", ""}, []string{"estargz"}},
		{[]string{"executor", "--executor", ""}, []string{"inplace"}},
	} {
		r := run(t, "", append([]string{"__complete"}, tc.args...)...)
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w+"\n") {
				t.Errorf("completing %v: %q lacks %q", tc.args, r.stdout, w)
			}
		}
	}
}

// TestQuietFormatterNoise: BuildKit's housekeeping lines show only at the
// debug level; other warnings always do.
func TestQuietFormatterNoise(t *testing.T) {
	for _, debug := range []bool{false, true} {
		q := &quietFormatter{Formatter: &logrus.TextFormatter{DisableTimestamp: true}, debug: debug}
		for _, msg := range []string{"deleting build record abc due to missing blobs", "failed to read oom_kill event", "failed check for fsverity support"} {
			b, err := q.Format(&logrus.Entry{Message: msg, Level: logrus.WarnLevel, Data: logrus.Fields{}})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(b) > 0; got != debug {
				t.Errorf("debug=%v: %q printed=%v", debug, msg, got)
			}
		}
		b, _ := q.Format(&logrus.Entry{Message: "pull of x failed", Level: logrus.WarnLevel, Data: logrus.Fields{}})
		if len(b) == 0 {
			t.Errorf("debug=%v: a real warning was dropped", debug)
		}
	}
}
