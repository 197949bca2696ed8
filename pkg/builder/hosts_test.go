package builder

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

func TestRegistryHostsMirrors(t *testing.T) {
	t.Parallel()
	o := &options{}
	err := WithRegistryHosts(map[string]registry.HostConfig{
		"index.docker.io": {Mirrors: []string{"mirror.example.com"}},
		"quay.io":         {Mirrors: []string{"q1.example.com", "q2.example.com/quay"}, NoFallback: true},
		"reg.example.com": {Mirrors: []string{"m.example.com:5000"}},
	})(o)
	if err != nil {
		t.Fatal(err)
	}
	hosts := registryHosts(o, nil)
	for _, tc := range []struct {
		host      string
		wantHosts []string // host + path of each, in order
	}{
		{"docker.io", []string{"mirror.example.com/v2", "registry-1.docker.io/v2"}},
		{"quay.io", []string{"q1.example.com/v2", "q2.example.com/v2/quay"}},
		{"reg.example.com:5000", []string{"m.example.com:5000/v2", "reg.example.com:5000/v2"}},
		{"other.example.com", []string{"other.example.com/v2"}},
	} {
		hs, err := hosts(tc.host)
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		var got []string
		for _, h := range hs {
			got = append(got, h.Host+h.Path)
			if h.Client == nil {
				t.Errorf("%s: host %s has no client", tc.host, h.Host)
			}
		}
		if diff := cmp.Diff(tc.wantHosts, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.host, diff)
		}
	}
}
