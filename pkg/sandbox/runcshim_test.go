//go:build linux

package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRuncShimBundle(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log", "x", "run", "--bundle", "/b1", "id"}, "/b1"},
		{[]string{"run", "--bundle=/b2", "id"}, "/b2"},
		{[]string{"run", "-b", "/b3", "id"}, "/b3"},
		{[]string{"--version"}, ""},
	} {
		if got := bundleArg(tc.args); got != tc.want {
			t.Errorf("bundleArg(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}

	cfg := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(cfg, []byte(`{"ociVersion":"1.2.0","mounts":[{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]},{"destination":"/tmp","type":"tmpfs","options":["gid=5"]}]}`), 0o600)
	if err := dropDevptsGID(cfg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cfg)
	if strings.Count(string(b), "gid=5") != 1 || !strings.Contains(string(b), `"mode=0620"`) || !strings.Contains(string(b), `"ociVersion":"1.2.0"`) {
		t.Errorf("config after the shim: %s", b)
	}
}
