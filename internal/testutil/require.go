package testutil

import (
	"fmt"
	"os"
	"testing"
)

// Require skips the test when ok is false, or fails it when $CI is "true":
// in CI a missing prerequisite means the CI setup is broken, and a silently
// skipped integration tier would hide that.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite (CI=true, so not skipping): %s", msg)
		return // only reached with a fake testing.TB
	}
	t.Skipf("missing prerequisite: %s", msg)
}

// RequireRoot requires the test to run as root (euid 0).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "test needs root (euid is %d)", os.Geteuid())
}
