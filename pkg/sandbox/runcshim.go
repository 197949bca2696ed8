//go:build linux

package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// With only one gid mapped into the user namespace (rootless without
// newgidmap), runc cannot mount /dev/pts with the gid=5 ("tty") that
// BuildKit's container spec asks for, and BuildKit offers no way to change
// its spec. imgbuild then puts itself between BuildKit and runc: BuildKit
// runs "runc", a link to imgbuild, which drops that one option from the
// bundle's config.json and executes the real runc.
const realRuncEnv = "_IMGBUILD_REAL_RUNC"

// SingleGIDMapped reports whether this process's user namespace maps a
// single group ID: then runc needs the shim (see [RuncShim]).
func SingleGIDMapped() bool {
	b, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 {
		return false
	}
	f := strings.Fields(lines[0])
	return len(f) == 3 && f[2] == "1"
}

// RuncShim makes root/shim/runc, a link to this executable, and returns it:
// the runc to give BuildKit instead of realRunc. Run as runc, the executable
// fixes the bundle and executes realRunc (see [RuncShimMain]).
func RuncShim(root, realRunc string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "shim")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	link := filepath.Join(dir, "runc")
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(self, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, link); err != nil {
		return "", err
	}
	if err := os.Setenv(realRuncEnv, realRunc); err != nil {
		return "", err
	}
	return link, nil
}

// RuncShimMain must be called first thing in main: when imgbuild runs as the
// runc shim, it fixes the bundle and executes the real runc, never
// returning. Otherwise it does nothing.
func RuncShimMain() {
	real := os.Getenv(realRuncEnv)
	if real == "" || filepath.Base(os.Args[0]) != "runc" {
		return
	}
	if bundle := bundleArg(os.Args[1:]); bundle != "" {
		if err := dropDevptsGID(filepath.Join(bundle, "config.json")); err != nil {
			fmt.Fprintf(os.Stderr, "imgbuild runc shim: %v\n", err)
			os.Exit(1)
		}
	}
	err := syscall.Exec(real, append([]string{real}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "imgbuild runc shim: executing %s: %v\n", real, err)
	os.Exit(1)
}

// bundleArg finds runc's --bundle/-b value.
func bundleArg(args []string) string {
	for i, a := range args {
		switch {
		case (a == "--bundle" || a == "-b") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--bundle="):
			return strings.TrimPrefix(a, "--bundle=")
		}
	}
	return ""
}

// dropDevptsGID removes gid= from the devpts mount's options.
func dropDevptsGID(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	mounts, _ := spec["mounts"].([]any)
	changed := false
	for _, m := range mounts {
		mm, _ := m.(map[string]any)
		if mm == nil || mm["type"] != "devpts" {
			continue
		}
		opts, _ := mm["options"].([]any)
		kept := slices.DeleteFunc(slices.Clone(opts), func(o any) bool {
			s, _ := o.(string)
			return strings.HasPrefix(s, "gid=")
		})
		if len(kept) != len(opts) {
			mm["options"] = kept
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}
