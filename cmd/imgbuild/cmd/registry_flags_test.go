package cmd

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

func TestRegistryFlagsHosts(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	// Any PEM certificate will do for parsing.
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, block, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		flags   registryFlags
		want    map[string]registry.HostConfig
		wantErr string
	}{{
		name: "kaniko mirrors and maps",
		flags: registryFlags{
			mirrors:    []string{"mirror.gcr.io", "m2.example.com/hub"},
			maps:       []string{"quay.io=q1.example.com;quay.io=q2.example.com", "ghcr.io=g.example.com"},
			noFallback: true,
		},
		want: map[string]registry.HostConfig{
			"docker.io": {Mirrors: []string{"mirror.gcr.io", "m2.example.com/hub"}, NoFallback: true},
			"quay.io":   {Mirrors: []string{"q1.example.com", "q2.example.com"}, NoFallback: true},
			"ghcr.io":   {Mirrors: []string{"g.example.com"}, NoFallback: true},
		},
	}, {
		// One setting per host serves pulls and pushes alike.
		name: "TLS settings apply to pulls and pushes",
		flags: registryFlags{
			skipTLSVerify: []string{"a.example.com"},
			certificates:  []string{"b.example.com:5000=" + ca},
		},
		want: map[string]registry.HostConfig{
			"a.example.com":      {SkipTLSVerify: true},
			"b.example.com:5000": {CAFiles: []string{ca}},
		},
	}, {
		name:    "bad registry-map",
		flags:   registryFlags{maps: []string{"quay.io"}},
		wantErr: `--registry-map "quay.io": want ORIG=NEW`,
	}, {
		name:    "bad client cert",
		flags:   registryFlags{clientCerts: []string{"a.example.com=cert.pem"}},
		wantErr: "want HOST=CERT.pem,KEY.pem",
	}, {
		name:    "missing CA file",
		flags:   registryFlags{certificates: []string{"a.example.com=" + filepath.Join(dir, "nope.pem")}},
		wantErr: "registry a.example.com: reading CA certificate",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, err := tc.flags.hosts()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, hosts); diff != "" {
				t.Errorf("host settings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRegistryFlagsRetries checks kaniko's --push-retry as the pusher gets
// it.
func TestRegistryFlagsRetries(t *testing.T) {
	for _, tc := range []struct {
		flags     registryFlags
		wantSteps int // 0: the pusher's default
	}{
		{registryFlags{}, 0},
		{registryFlags{pushRetry: 1}, 2},
		{registryFlags{pushRetry: 4}, 5},
	} {
		o, _, err := tc.flags.options()
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		if o.RetryBackoff != nil {
			steps = o.RetryBackoff.Steps
			if o.RetryBackoff.Duration != time.Second || o.RetryBackoff.Factor != 2 {
				t.Errorf("push backoff %+v, want kaniko's 1 s doubling", *o.RetryBackoff)
			}
		}
		if steps != tc.wantSteps {
			t.Errorf("pushRetry %d: %d attempts, want %d", tc.flags.pushRetry, steps, tc.wantSteps)
		}
	}
}
