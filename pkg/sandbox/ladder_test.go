//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// TestMain lets the test binary be the probe child of probeChild, which
// re-executes os.Executable() as imgbuild's main does.
func TestMain(m *testing.M) {
	ProbeMain()
	os.Exit(m.Run())
}

var (
	errUnshare = errors.New("unshare(CLONE_NEWUSER): operation not permitted (seccomp or AppArmor)")
	errProcfs  = errors.New("mount(proc) in a user namespace: operation not permitted (a masked /proc)")
	// What InBuildContainer(false) says outside imgbuild's image.
	errNoMarker = fmt.Errorf("%s not found (not imgbuild's image)", buildContainerMarker)
)

// fakeProbe is a machine for probe.choose; calls records which checks ran.
type fakeProbe struct {
	root, capSysAdmin      bool
	userNS, procfs         error
	buildContainer         error
	calls                  []string
	buildContainerExplicit []bool
}

func (f *fakeProbe) probe() probe {
	return probe{
		root:        f.root,
		capSysAdmin: f.capSysAdmin,
		userNS:      func() error { f.calls = append(f.calls, "userns"); return f.userNS },
		procfs:      func() error { f.calls = append(f.calls, "procfs"); return f.procfs },
		buildContainer: func(explicit bool) error {
			f.calls = append(f.calls, "buildContainer")
			f.buildContainerExplicit = append(f.buildContainerExplicit, explicit)
			return f.buildContainer
		},
	}
}

func TestChoose(t *testing.T) {
	hostErr := &PreflightError{Problem: "--executor inplace rewrites / and this looks like a host", Fix: "use --executor runc"}
	for _, tc := range []struct {
		name    string
		machine fakeProbe
		want    Executor
		// wantChoice is checked when want is set; wantErr otherwise.
		userNS     bool
		reason     []string // all in Reason; nil: Reason is empty
		wantErr    []string // all in the error's text
		preflight  bool     // the error is a *PreflightError
		errIs      error    // errors.Is(err, errIs)
		noCalls    []string // checks that must not run
		explicitBC []bool   // the explicit flags buildContainer got
	}{{
		name:    "root with CAP_SYS_ADMIN",
		machine: fakeProbe{root: true, capSysAdmin: true, userNS: errUnshare, procfs: errProcfs, buildContainer: errNoMarker},
		want:    Runc,
		noCalls: []string{"userns", "procfs", "buildContainer"},
	}, {
		name:    "root without CAP_SYS_ADMIN",
		machine: fakeProbe{root: true},
		want:    Runc, userNS: true,
		reason:  []string{"no CAP_SYS_ADMIN", "user namespace"},
		noCalls: []string{"buildContainer"},
	}, {
		name:    "not root",
		machine: fakeProbe{},
		want:    Runc, userNS: true,
		reason: []string{"not root", "user namespace"},
	}, {
		name:    "masked /proc",
		machine: fakeProbe{procfs: errProcfs},
		want:    RuncNoSandbox, userNS: true,
		reason:  []string{"not root", errProcfs.Error()},
		noCalls: []string{"buildContainer"},
	}, {
		name:       "no user namespace, in imgbuild's image",
		machine:    fakeProbe{root: true, userNS: errUnshare},
		want:       InPlace,
		reason:     []string{"no CAP_SYS_ADMIN", errUnshare.Error()},
		noCalls:    []string{"procfs"},
		explicitBC: []bool{false},
	}, {
		name:       "no user namespace, not in imgbuild's image",
		machine:    fakeProbe{userNS: errUnshare, buildContainer: errNoMarker},
		wantErr:    []string{errUnshare.Error(), buildContainerMarker, userNSFix, "imgbuild's image"},
		preflight:  true,
		explicitBC: []bool{false},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.machine
			c, err := m.probe().choose(Auto)
			checkChoice(t, c, err, tc.want, tc.userNS, tc.reason, tc.wantErr, tc.preflight, tc.errIs)
			for _, n := range tc.noCalls {
				if containsString(m.calls, n) {
					t.Errorf("probed %s (calls %q), which this choice does not need", n, m.calls)
				}
			}
			if tc.explicitBC != nil && fmt.Sprint(m.buildContainerExplicit) != fmt.Sprint(tc.explicitBC) {
				t.Errorf("buildContainer(explicit) calls %v, want %v", m.buildContainerExplicit, tc.explicitBC)
			}
		})
	}

	for _, tc := range []struct {
		name      string
		want      Executor
		machine   fakeProbe
		got       Executor
		userNS    bool
		reason    []string
		wantErr   []string
		preflight bool
		errIs     error
	}{{
		name:    "runc as privileged root",
		want:    Runc,
		machine: fakeProbe{root: true, capSysAdmin: true, userNS: errUnshare},
		got:     Runc,
	}, {
		name:    "runc in a user namespace",
		want:    Runc,
		machine: fakeProbe{},
		got:     Runc, userNS: true,
	}, {
		name:      "runc without a user namespace",
		want:      Runc,
		machine:   fakeProbe{root: true, userNS: errUnshare},
		wantErr:   []string{"--executor runc", errUnshare.Error(), userNSFix, "--executor inplace"},
		preflight: true,
	}, {
		name:      "runc with a masked /proc",
		want:      Runc,
		machine:   fakeProbe{procfs: errProcfs},
		wantErr:   []string{"--executor runc", errProcfs.Error(), procFix, "--executor runc-no-sandbox"},
		preflight: true,
	}, {
		name:    "runc-no-sandbox",
		want:    RuncNoSandbox,
		machine: fakeProbe{procfs: errProcfs},
		got:     RuncNoSandbox, userNS: true,
	}, {
		name:      "runc-no-sandbox without a user namespace",
		want:      RuncNoSandbox,
		machine:   fakeProbe{userNS: errUnshare},
		wantErr:   []string{"--executor runc-no-sandbox", errUnshare.Error(), userNSFix},
		preflight: true,
	}, {
		name:    "inplace in a container",
		want:    InPlace,
		machine: fakeProbe{root: true, capSysAdmin: true},
		got:     InPlace,
		reason:  []string{"--executor inplace"},
	}, {
		name:      "inplace on a host",
		want:      InPlace,
		machine:   fakeProbe{root: true, capSysAdmin: true, buildContainer: hostErr},
		wantErr:   []string{hostErr.Problem},
		preflight: true,
		errIs:     hostErr,
	}} {
		t.Run("explicit "+tc.name, func(t *testing.T) {
			m := tc.machine
			c, err := m.probe().choose(tc.want)
			checkChoice(t, c, err, tc.got, tc.userNS, tc.reason, tc.wantErr, tc.preflight, tc.errIs)
			if tc.want == InPlace && fmt.Sprint(m.buildContainerExplicit) != "[true]" {
				t.Errorf("buildContainer(explicit) calls %v, want [true]", m.buildContainerExplicit)
			}
		})
	}
}

func checkChoice(t *testing.T, c Choice, err error, want Executor, userNS bool, reason, wantErr []string, preflight bool, errIs error) {
	t.Helper()
	if want == "" {
		if err == nil {
			t.Fatalf("choose = %+v, want an error", c)
		}
		for _, w := range wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
		var pe *PreflightError
		if preflight && !errors.As(err, &pe) {
			t.Errorf("error %v (%T) is not a *PreflightError", err, err)
		}
		if errIs != nil && !errors.Is(err, errIs) {
			t.Errorf("error %v is not the probe's %v", err, errIs)
		}
		return
	}
	if err != nil {
		t.Fatalf("choose: %v, want %s", err, want)
	}
	if c.Executor != want || c.UserNamespace != userNS || c.Pinned {
		t.Errorf("choose = %+v, want executor %s, user namespace %v, not pinned", c, want, userNS)
	}
	if reason == nil && c.Reason != "" {
		t.Errorf("reason %q, want none", c.Reason)
	}
	for _, w := range reason {
		if !strings.Contains(c.Reason, w) {
			t.Errorf("reason %q lacks %q", c.Reason, w)
		}
	}
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestParseExecutor(t *testing.T) {
	for in, want := range map[string]Executor{
		"":                Auto,
		"auto":            Auto,
		"runc":            Runc,
		"runc-no-sandbox": RuncNoSandbox,
		"inplace":         InPlace,
	} {
		got, err := ParseExecutor(in)
		if err != nil || got != want {
			t.Errorf("ParseExecutor(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"chroot", "RUNC", " runc"} {
		_, err := ParseExecutor(in)
		if err == nil {
			t.Errorf("ParseExecutor(%q) accepted it", in)
			continue
		}
		for _, w := range append([]string{fmt.Sprintf("%q", in)}, "auto", "runc", "runc-no-sandbox", "inplace") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseExecutor(%q): error %q lacks %q", in, err, w)
			}
		}
	}
}

func TestChoiceLine(t *testing.T) {
	for _, tc := range []struct {
		c    Choice
		want []string
	}{
		{Choice{Executor: Runc}, []string{"executor runc:", "their own namespaces"}},
		{Choice{Executor: Runc, UserNamespace: true, Reason: "not root: in a user namespace"}, []string{"executor runc (not root: in a user namespace):", "their own namespaces"}},
		{Choice{Executor: RuncNoSandbox, Reason: "not root; " + errProcfs.Error()}, []string{"executor runc-no-sandbox (not root; mount(proc)", "share this build's PID namespace", "credentials are kept out of their reach"}},
		{Choice{Executor: InPlace, Reason: "no CAP_SYS_ADMIN; " + errUnshare.Error()}, []string{"executor inplace (no CAP_SYS_ADMIN; unshare", "this container's root filesystem", "without isolation"}},
	} {
		got := tc.c.Line()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("Line() = %q, lacks %q", got, w)
			}
		}
		if strings.Contains(got, "\n") {
			t.Errorf("Line() = %q, more than one line", got)
		}
	}
}

func TestChooseExecutorPinned(t *testing.T) {
	for _, e := range []Executor{Runc, RuncNoSandbox, InPlace} {
		k, v, found := strings.Cut(PinExecutor(Choice{Executor: e, UserNamespace: true, Reason: "r"}), "=")
		if !found || k != executorEnv {
			t.Fatalf("PinExecutor = %s=%s, want %s=…", k, v, executorEnv)
		}
		t.Setenv(k, v)
		// Asked for another rung: the child keeps its parent's and probes
		// nothing (its view of the machine differs).
		c, err := ChooseExecutor(Auto)
		if err != nil || c != (Choice{Executor: e, Pinned: true}) {
			t.Errorf("ChooseExecutor with %s=%s = %+v, %v, want %s pinned", k, v, c, err, e)
		}
	}
}

// TestProbeChild runs the real probes, re-executing this test binary (see
// TestMain): as root a user namespace can be made, and the host's /proc is
// not masked.
func TestProbeChild(t *testing.T) {
	testutil.RequireRoot(t)
	for _, what := range []string{"userns", "procfs"} {
		if err := probeChild(what); err != nil {
			t.Errorf("probeChild(%s): %v", what, err)
		}
	}
	// An unknown probe exits 2 with nothing said: reported, not passed.
	if err := probeChild("nonsense"); err == nil {
		t.Errorf("probeChild(nonsense) succeeded")
	}
}
