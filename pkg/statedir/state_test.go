package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestStateDir(t *testing.T) {
	t.Parallel()
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("$HOME is not defined") }
	for _, tc := range []struct {
		name    string
		flag    string
		env     map[string]string
		euid    int
		home    func() (string, error)
		want    string
		wantErr bool
	}{
		{name: "flag wins over everything", flag: "/x", env: map[string]string{EnvRoot: "/env", "XDG_DATA_HOME": "/xdg"}, euid: 0, want: "/x"},
		{name: "relative flag made absolute", flag: "state", euid: 1000, want: filepath.Join(cwd, "state")},
		{name: "flag is cleaned", flag: "/x/../y/", euid: 1000, want: "/y"},
		{name: "env over root default", env: map[string]string{EnvRoot: "/env"}, euid: 0, want: "/env"},
		{name: "env over xdg", env: map[string]string{EnvRoot: "/env", "XDG_DATA_HOME": "/xdg"}, euid: 1000, want: "/env"},
		{name: "root default", env: map[string]string{"XDG_DATA_HOME": "/xdg"}, euid: 0, want: "/var/lib/imgbuild"},
		{name: "rootless xdg", env: map[string]string{"XDG_DATA_HOME": "/xdg"}, euid: 1000, want: "/xdg/imgbuild"},
		{name: "rootless home default", euid: 1000, want: "/home/u/.local/share/imgbuild"},
		{name: "relative xdg ignored", env: map[string]string{"XDG_DATA_HOME": "rel"}, euid: 1000, want: "/home/u/.local/share/imgbuild"},
		{name: "rootless without home", euid: 1000, home: noHome, wantErr: true},
		{name: "root without home is fine", euid: 0, home: noHome, want: "/var/lib/imgbuild"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := tc.home
			if h == nil {
				h = home
			}
			got, err := stateDir(tc.flag, func(k string) string { return tc.env[k] }, tc.euid, h)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("stateDir() = %q, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("stateDir(): %v", err)
			}
			if got != tc.want {
				t.Errorf("stateDir() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStateDirEnv(t *testing.T) {
	t.Setenv(EnvRoot, "/from/env")
	got, err := StateDir("")
	if err != nil {
		t.Fatal(err)
	}
	if got != "/from/env" {
		t.Errorf("StateDir(\"\") = %q, want /from/env", got)
	}
}
