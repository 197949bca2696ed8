//go:build linux

package sandbox

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestPreflight checks that each missing requirement is reported with the
// setting that fixes it, before anything else happens.
func TestPreflight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{{
		name:  "user namespaces disabled",
		files: map[string]string{"/proc/sys/user/max_user_namespaces": "0\n"},
		want:  []string{"user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces=15000"},
	}, {
		name:  "Debian unprivileged clone off",
		files: map[string]string{"/proc/sys/user/max_user_namespaces": "1000\n", "/proc/sys/kernel/unprivileged_userns_clone": "0\n"},
		want:  []string{"kernel.unprivileged_userns_clone = 0", "sysctl -w kernel.unprivileged_userns_clone=1"},
	}, {
		name:  "Ubuntu AppArmor restriction",
		files: map[string]string{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"},
		want:  []string{"apparmor_restrict_unprivileged_userns = 1", "appArmorProfile.type: Unconfined"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			old := procFile
			defer func() { procFile = old }()
			procFile = func(p string) ([]byte, error) {
				if v, ok := tc.files[p]; ok {
					return []byte(v), nil
				}
				return nil, os.ErrNotExist
			}
			_, err := preflight()
			var pe *PreflightError
			if !errors.As(err, &pe) {
				t.Fatalf("preflight() = %v, want a PreflightError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSubIDs(t *testing.T) {
	f := t.TempDir() + "/subuid"
	os.WriteFile(f, []byte("alice:100000:65536\n1001:200000:1000\nbad line\n"), 0o644)
	if m := subIDs(f, nil, 1001); m == nil || m.outside != 200000 || m.size != 1000 {
		t.Errorf("by uid: %+v", m)
	}
	if m := subIDs(f, nil, 1002); m != nil {
		t.Errorf("unknown uid: %+v", m)
	}
}

func TestStartError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&os.PathError{Op: "fork/exec", Path: "/imgbuild", Err: syscall.EPERM}, "seccompProfile.type: Unconfined"},
		{&os.PathError{Op: "fork/exec", Path: "/imgbuild", Err: syscall.ENOSPC}, "user.max_user_namespaces"},
	} {
		err := startError(tc.err, &userNSPlan{})
		var pe *PreflightError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("startError(%v) = %v, want a PreflightError naming %q", tc.err, err, tc.want)
		}
	}
}
