package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// ErrInsecureRunc is wrapped by the error [CheckRunc] returns for a runc that
// lacks the container-escape fixes listed in [RuncCVEs].
var ErrInsecureRunc = errors.New("runc lacks container-escape fixes")

// RuncCVEs are the runc container-escape vulnerabilities whose fixes
// [CheckRunc] requires.
var RuncCVEs = []string{"CVE-2024-21626", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"}

// runcMinimums are the oldest acceptable releases per minor line; a version
// on a line not listed here is accepted when it is at least the last entry,
// so every 1.5.x and later release passes, and 1.2.x and older fail.
var runcMinimums = []runcVersion{
	{major: 1, minor: 3, patch: 6},
	{major: 1, minor: 4, patch: 3},
	{major: 1, minor: 5, patch: 0},
}

const runcHint = "run `make runc` to build a fixed runc into bin/runc"

// FindRunc returns the runc binary to use. The first that applies wins:
//   - explicit, when non-empty (a path, or a name looked up in $PATH);
//   - "runc" in the directory of the running executable, so a release
//     unpacked as bin/imgbuild + bin/runc uses its own runc;
//   - "runc" on $PATH.
func FindRunc(explicit string) (string, error) {
	return findRunc(explicit, os.Executable, exec.LookPath)
}

// findRunc is FindRunc with its lookups injected for tests.
func findRunc(explicit string, executable func() (string, error), lookPath func(string) (string, error)) (string, error) {
	if explicit != "" {
		p, err := lookPath(explicit)
		if err != nil {
			return "", fmt.Errorf("finding runc %q: %w", explicit, err)
		}
		return filepath.Abs(p)
	}
	if exe, err := executable(); err == nil {
		// Resolve symlinks so /usr/local/bin/imgbuild -> /opt/imgbuild/bin/imgbuild
		// finds /opt/imgbuild/bin/runc.
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		if p, err := lookPath(filepath.Join(filepath.Dir(exe), "runc")); err == nil {
			return filepath.Abs(p)
		}
	}
	p, err := lookPath("runc")
	if err != nil {
		return "", fmt.Errorf("finding runc: none next to the imgbuild binary or on $PATH (%w); %s, or pass its path", err, runcHint)
	}
	return filepath.Abs(p)
}

// CheckRunc runs `path --version` and refuses a runc without the fixes for
// [RuncCVEs]: accepted are 1.3.6 and later 1.3.x, 1.4.3 and later 1.4.x, and
// 1.5.0 and later. Pre-releases sort before their release (1.5.0-rc.1 is
// refused). A version that cannot be parsed is refused too.
//
// With allowInsecure, a refused runc returns a nil error and a non-empty
// warning instead, for hosts whose distribution backports the fixes without
// bumping the version.
//
// A refusal wraps [ErrInsecureRunc] and does not name the caller's override
// (a CLI adds its flag when it prints the error).
func CheckRunc(ctx context.Context, path string, allowInsecure bool) (version string, warning string, err error) {
	return CheckRuncCached(ctx, "", path, allowInsecure)
}

// CheckRuncCached is [CheckRunc] with the `--version` output cached in the
// state dir root (when not empty), keyed by the binary's identity: exec'ing
// runc took a tenth of a no-change rebuild.
func CheckRuncCached(ctx context.Context, root, path string, allowInsecure bool) (version string, warning string, err error) {
	out, err := runcVersionOutput(ctx, root, path)
	if err != nil {
		return "", "", err
	}
	version, problem := checkRuncVersion(out)
	if problem == "" {
		return version, "", nil
	}
	msg := fmt.Sprintf("%s at %s %s", displayVersion(version), path, problem)
	if allowInsecure {
		return version, msg + "; using it anyway because insecure runc is allowed: a RUN step may be able to escape its container", nil
	}
	return version, "", fmt.Errorf("%w: %s; %s", ErrInsecureRunc, msg, runcHint)
}

// runcVersionCache is the state dir file holding the last `runc --version`.
const runcVersionCache = "runc.version" // not runc-*: those are worker dirs

type runcVersionRecord struct {
	Binary string `json:"binary"` // path and identity, see runcIdentity
	Output string `json:"output"`
}

// runcIdentity names the file at path by what changes when it is replaced
// or rewritten: device, inode, size, mtime and ctime (which no user can
// set back).
func runcIdentity(path string) (string, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", false
	}
	return fmt.Sprintf("%s dev=%d ino=%d size=%d mtime=%d.%d ctime=%d.%d", path, st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), true
}

// runcVersionOutput returns `path --version`'s output, from root's cache
// when the binary is the one it was recorded for.
func runcVersionOutput(ctx context.Context, root, path string) (string, error) {
	id, ok := runcIdentity(path)
	cache := filepath.Join(root, runcVersionCache)
	if root != "" && ok {
		var rec runcVersionRecord
		if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &rec) == nil && rec.Binary == id {
			return rec.Output, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return "", fmt.Errorf("running %s --version: %w", path, err)
	}
	if root != "" && ok {
		if b, err := json.Marshal(runcVersionRecord{Binary: id, Output: stdout.String()}); err == nil {
			// Best effort: concurrent builds write the same record.
			_ = atomicfile.WriteFile(cache, b, 0o600)
		}
	}
	return stdout.String(), nil
}

func displayVersion(v string) string {
	if v == "" {
		return "runc of unknown version"
	}
	return "runc " + v
}

var runcVersionRE = regexp.MustCompile(`(?m)^runc version (\S+)`)

// checkRuncVersion parses `runc --version` output and returns the version
// and, if it is not acceptable, why.
func checkRuncVersion(out string) (version, problem string) {
	m := runcVersionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Sprintf("prints no \"runc version X.Y.Z\" line, so it cannot be checked for the fixes for %s", strings.Join(RuncCVEs, ", "))
	}
	version = m[1]
	v, err := parseRuncVersion(version)
	if err != nil {
		return version, fmt.Sprintf("has an unparseable version (%v), so it cannot be checked for the fixes for %s", err, strings.Join(RuncCVEs, ", "))
	}
	if !v.fixed() {
		return version, fmt.Sprintf("lacks the fixes for container-escape vulnerabilities %s (need 1.3.6+, 1.4.3+ or 1.5.0+)", strings.Join(RuncCVEs, ", "))
	}
	return version, ""
}

type runcVersion struct {
	major, minor, patch int
	pre                 string // "rc.1" in 1.4.0-rc.1; empty for a release
}

// parseRuncVersion parses X.Y.Z[-pre][+build]. Build metadata, as in Debian's
// "1.1.5+ds1", is ignored.
func parseRuncVersion(s string) (runcVersion, error) {
	var v runcVersion
	core, _, _ := strings.Cut(s, "+")
	core, v.pre, _ = strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("parsing runc version %q: want X.Y.Z", s)
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("parsing runc version %q: bad number %q", s, p)
		}
		nums[i] = n
	}
	v.major, v.minor, v.patch = nums[0], nums[1], nums[2]
	return v, nil
}

// compare orders versions like semver, with any pre-release before its
// release; pre-release identifiers compare numerically when both are
// numbers ("rc.10" > "rc.9").
func (v runcVersion) compare(o runcVersion) int {
	for _, d := range [][2]int{{v.major, o.major}, {v.minor, o.minor}, {v.patch, o.patch}} {
		if d[0] != d[1] {
			return cmpInt(d[0], d[1])
		}
	}
	switch {
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	a, b := strings.Split(v.pre, "."), strings.Split(o.pre, ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		an, aErr := strconv.Atoi(a[i])
		bn, bErr := strconv.Atoi(b[i])
		switch {
		case aErr == nil && bErr == nil:
			if an != bn {
				return cmpInt(an, bn)
			}
		case a[i] != b[i]:
			return strings.Compare(a[i], b[i])
		}
	}
	return cmpInt(len(a), len(b))
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fixed reports whether v carries the fixes for RuncCVEs.
func (v runcVersion) fixed() bool {
	for _, m := range runcMinimums {
		if v.major == m.major && v.minor == m.minor {
			return v.compare(m) >= 0
		}
	}
	return v.compare(runcMinimums[len(runcMinimums)-1]) >= 0
}
