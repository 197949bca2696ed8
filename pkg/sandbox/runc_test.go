package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckRuncVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"1.0.0", false},
		{"1.1.5", false},
		{"1.1.5+ds1", false}, // Debian 12
		{"1.1.15", false},
		{"1.2.0", false},
		{"1.2.8", false},
		{"1.3.0", false},
		{"1.3.5", false},
		{"1.3.6", true},
		{"1.3.10", true},
		{"1.3.6-rc.1", false},
		{"1.4.0-rc.1", false},
		{"1.4.0", false},
		{"1.4.2", false},
		{"1.4.3", true},
		{"1.4.3+dev", true},
		{"1.4.12", true},
		{"1.5.0-rc.3", false},
		{"1.5.0", true},
		{"1.5.2", true},
		{"1.6.0-rc.1", true},
		{"1.10.0", true},
		{"2.0.0", true},
		{"0.1.1", false},
	} {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			out := fmt.Sprintf("runc version %s\ncommit: v%s-0-g0000000\nspec: 1.2.1\ngo: go1.26.8\nlibseccomp: 2.5.4\n", tc.version, tc.version)
			got, problem := checkRuncVersion(out)
			if got != tc.version {
				t.Errorf("version = %q, want %q", got, tc.version)
			}
			if (problem == "") != tc.ok {
				t.Fatalf("accepted = %v (%q), want %v", problem == "", problem, tc.ok)
			}
			if tc.ok {
				return
			}
			for _, cve := range RuncCVEs {
				if !strings.Contains(problem, cve) {
					t.Errorf("problem %q does not name %s", problem, cve)
				}
			}
		})
	}
}

func TestRuncVersionCompare(t *testing.T) {
	t.Parallel()
	// Each entry is strictly older than the next.
	ordered := []string{"1.3.9", "1.4.0-rc.1", "1.4.0-rc.2", "1.4.0-rc.10", "1.4.0", "1.4.1", "1.10.0", "2.0.0"}
	for i := 0; i+1 < len(ordered); i++ {
		a, err := parseRuncVersion(ordered[i])
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseRuncVersion(ordered[i+1])
		if err != nil {
			t.Fatal(err)
		}
		if a.compare(b) >= 0 || b.compare(a) <= 0 || a.compare(a) != 0 {
			t.Errorf("want %s < %s", ordered[i], ordered[i+1])
		}
	}
	for _, bad := range []string{"1.4", "1.x.0", "v1.4.0", "", "1.2.3.4"} {
		if _, err := parseRuncVersion(bad); err == nil {
			t.Errorf("parseRuncVersion(%q) succeeded, want error", bad)
		}
	}
}

// fakeRunc writes a shell script that prints out for --version.
func fakeRunc(t *testing.T, dir, out string) string {
	t.Helper()
	p := filepath.Join(dir, "runc")
	script := "#!/bin/sh\ncat <<'END'\n" + out + "\nEND\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkRunc calls CheckRunc, retrying on ETXTBSY: a child forked by a
// parallel test can briefly inherit the fd that wrote the script
// (golang.org/issue/22315).
func checkRuncRetry(t *testing.T, path string, allowInsecure bool) (version, warning string, err error) {
	for range 50 {
		version, warning, err = CheckRunc(t.Context(), path, allowInsecure)
		if !errors.Is(err, syscall.ETXTBSY) {
			return version, warning, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return version, warning, err
}

func TestCheckRunc(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		out           string
		allowInsecure bool
		wantVersion   string
		wantWarning   bool
		wantErr       bool
	}{
		{name: "fixed", out: "runc version 1.5.2\nspec: 1.3.0", wantVersion: "1.5.2"},
		{name: "old refused", out: "runc version 1.1.5+ds1\nspec: 1.0.2-dev", wantVersion: "1.1.5+ds1", wantErr: true},
		{name: "old allowed", out: "runc version 1.1.5+ds1", allowInsecure: true, wantVersion: "1.1.5+ds1", wantWarning: true},
		{name: "unknown refused", out: "something else", wantErr: true},
		{name: "unknown allowed", out: "something else", allowInsecure: true, wantWarning: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := fakeRunc(t, t.TempDir(), tc.out)
			version, warning, err := checkRuncRetry(t, p, tc.allowInsecure)
			if version != tc.wantVersion {
				t.Errorf("version = %q, want %q", version, tc.wantVersion)
			}
			if (warning != "") != tc.wantWarning {
				t.Errorf("warning = %q, want warning: %v", warning, tc.wantWarning)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInsecureRunc) {
				t.Errorf("err = %v, want ErrInsecureRunc", err)
			}
			for _, want := range append([]string{tc.wantVersion, p, "make runc"}, RuncCVEs...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// The override's flag is the CLI's to name (see cmd/imgbuild's insecureRuncHint).
			if strings.Contains(err.Error(), "--allow-insecure-runc") {
				t.Errorf("library error %q names a CLI flag", err)
			}
		})
	}
}

// TestCheckRuncCached: the state dir remembers `runc --version` for the
// binary it ran, and asks again once the binary is replaced, so swapping in
// an old runc is still refused.
func TestCheckRuncCached(t *testing.T) {
	t.Parallel()
	dir, root := t.TempDir(), t.TempDir()
	runs := filepath.Join(dir, "runs")
	write := func(version string) string {
		p := filepath.Join(dir, "runc")
		tmp := p + ".new"
		script := "#!/bin/sh\necho run >>" + runs + "\necho 'runc version " + version + "'\n"
		if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil { // a new inode, as a package upgrade makes
			t.Fatal(err)
		}
		return p
	}
	check := func(p string) (string, error) {
		for range 50 {
			v, _, err := CheckRuncCached(t.Context(), root, p, false)
			if !errors.Is(err, syscall.ETXTBSY) {
				return v, err
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("runc script stayed busy")
		return "", nil
	}
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run")
	}

	p := write("1.5.2")
	for i := range 3 {
		if v, err := check(p); err != nil || v != "1.5.2" {
			t.Fatalf("check %d = %q, %v; want 1.5.2", i, v, err)
		}
	}
	if n := count(); n != 1 {
		t.Errorf("runc --version ran %d times for 3 checks of one binary, want 1", n)
	}
	p = write("1.1.5")
	if v, err := check(p); !errors.Is(err, ErrInsecureRunc) || v != "1.1.5" {
		t.Fatalf("after replacing runc with 1.1.5: %q, %v; want ErrInsecureRunc", v, err)
	}
	if n := count(); n != 2 {
		t.Errorf("runc --version ran %d times, want 2 (once more for the new binary)", n)
	}
}

func TestCheckRuncNotRunnable(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "runc")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho broken >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := checkRuncRetry(t, p, true)
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("err = %v, want the failure with its stderr even with allowInsecure", err)
	}
}

func TestFindRunc(t *testing.T) {
	t.Parallel()
	besideDir := t.TempDir()
	beside := fakeRunc(t, besideDir, "runc version 1.5.2")
	pathDir := t.TempDir()
	onPath := fakeRunc(t, pathDir, "runc version 1.5.2")
	explicit := fakeRunc(t, t.TempDir(), "runc version 1.5.2")
	emptyDir := t.TempDir()

	// lookPath resolves bare names against pathDir only (when it has runc),
	// and paths by existence, like exec.LookPath with PATH=pathDir.
	lookPath := func(withPath bool) func(string) (string, error) {
		return func(name string) (string, error) {
			if !strings.Contains(name, "/") {
				if !withPath {
					return "", errors.New("executable file not found in $PATH")
				}
				name = filepath.Join(pathDir, name)
			}
			if _, err := os.Stat(name); err != nil {
				return "", err
			}
			return name, nil
		}
	}
	exeIn := func(dir string) func() (string, error) {
		return func() (string, error) { return filepath.Join(dir, "imgbuild"), nil }
	}
	for _, tc := range []struct {
		name     string
		explicit string
		exeDir   string
		withPath bool
		want     string
		wantErr  string
	}{
		{name: "explicit wins", explicit: explicit, exeDir: besideDir, withPath: true, want: explicit},
		{name: "explicit name on PATH", explicit: "runc", exeDir: besideDir, withPath: true, want: onPath},
		{name: "explicit missing", explicit: "/nonexistent/runc", exeDir: besideDir, withPath: true, wantErr: "/nonexistent/runc"},
		{name: "beside executable over PATH", exeDir: besideDir, withPath: true, want: beside},
		{name: "PATH when none beside", exeDir: emptyDir, withPath: true, want: onPath},
		{name: "none anywhere", exeDir: emptyDir, wantErr: "make runc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := findRunc(tc.explicit, exeIn(tc.exeDir), lookPath(tc.withPath))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("findRunc() = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("findRunc() = %q, want %q", got, tc.want)
			}
		})
	}
}
