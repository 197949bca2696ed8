package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvRoot is the environment variable that overrides the default state
// directory when no --root flag is given.
const EnvRoot = "IMGBUILD_ROOT"

// SystemStateDir is the state directory used when running as root.
const SystemStateDir = "/var/lib/imgbuild"

// StateDir resolves the state directory. The first that applies wins:
//   - flag, the value of --root, when non-empty;
//   - $IMGBUILD_ROOT;
//   - /var/lib/imgbuild when the effective uid is 0;
//   - $XDG_DATA_HOME/imgbuild, where XDG_DATA_HOME defaults to ~/.local/share.
//
// The result is always an absolute, cleaned path. The directory is not
// created; [Dir.Acquire] does that.
func StateDir(flag string) (string, error) {
	return stateDir(flag, os.Getenv, os.Geteuid(), os.UserHomeDir)
}

// stateDir is StateDir with its environment injected, so every branch can be
// tested without being root or touching the process environment.
func stateDir(flag string, getenv func(string) string, euid int, home func() (string, error)) (string, error) {
	dir := flag
	switch {
	case dir != "":
	case getenv(EnvRoot) != "":
		dir = getenv(EnvRoot)
	case euid == 0:
		dir = SystemStateDir
	default:
		// The XDG base directory spec says relative values are invalid and
		// must be ignored.
		data := getenv("XDG_DATA_HOME")
		if data == "" || !filepath.IsAbs(data) {
			h, err := home()
			if err != nil {
				return "", fmt.Errorf("resolving state dir: %w", err)
			}
			if h == "" {
				return "", errors.New("resolving state dir: no home directory; set " + EnvRoot)
			}
			data = filepath.Join(h, ".local", "share")
		}
		dir = filepath.Join(data, "imgbuild")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving state dir %q: %w", dir, err)
	}
	return abs, nil
}
