//go:build linux

package builder

import (
	"os"
	"slices"
	"testing"
)

// TestInPlaceProtect checks that WithProtectedPaths (kaniko's --ignore-path)
// reaches the list the in-place executor leaves alone, after imgbuild's own.
func TestInPlaceProtect(t *testing.T) {
	t.Parallel()
	o := &options{root: "/var/lib/imgbuild", runc: "/kaniko/runc"}
	for _, opt := range []Option{WithProtectedPaths("/var/mail", "/opt/tools"), WithProtectedPaths("/etc/ssl/private")} {
		if err := opt(o); err != nil {
			t.Fatal(err)
		}
	}
	got, err := inPlaceProtect(o, func(k string) string {
		if k == "DOCKER_CONFIG" {
			return "/kaniko/.docker/"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	want := []string{"/var/lib/imgbuild", "kaniko", exe, "/kaniko/.docker/", "/kaniko/runc", "/var/mail", "/opt/tools", "/etc/ssl/private"}
	if !slices.Equal(got, want) {
		t.Errorf("protect = %q, want %q", got, want)
	}
	for _, bad := range []string{"/", "", "//", "/."} {
		if err := WithProtectedPaths(bad)(&options{}); err == nil {
			t.Errorf("WithProtectedPaths(%q) accepted", bad)
		}
	}
}
