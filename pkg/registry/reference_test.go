package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestParseReference(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		ref        string
		insecure   []string
		wantScheme string
		wantName   string
	}{
		{"public registry uses TLS", "reg.example.com/app:v1", nil, "https", "reg.example.com/app:v1"},
		{"loopback uses plain HTTP", "127.0.0.1:5000/app:v1", nil, "http", "127.0.0.1:5000/app:v1"},
		{"insecure host", "reg.example.com/app:v1", []string{"reg.example.com"}, "http", "reg.example.com/app:v1"},
		{"insecure host matches any port", "reg.example.com:8443/app", []string{"reg.example.com"}, "http", "reg.example.com:8443/app:latest"},
		{"insecure host:port is exact", "reg.example.com:8443/app", []string{"reg.example.com:5000"}, "https", "reg.example.com:8443/app:latest"},
		{"docker hub alias", "alpine", []string{"docker.io"}, "http", "index.docker.io/library/alpine:latest"},
		{"digest", "reg.example.com/app@sha256:" + strings.Repeat("a", 64), []string{"reg.example.com"}, "http", "reg.example.com/app@sha256:" + strings.Repeat("a", 64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ref, err := ParseReference(tc.ref, tc.insecure)
			if err != nil {
				t.Fatal(err)
			}
			if got := ref.Context().Scheme(); got != tc.wantScheme {
				t.Errorf("scheme = %q, want %q", got, tc.wantScheme)
			}
			if got := ref.Name(); got != tc.wantName {
				t.Errorf("name = %q, want %q", got, tc.wantName)
			}
		})
	}
}

func TestParseReferenceError(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Not A Ref!!", "app:", "reg.example.com/app@sha256:short"} {
		_, err := ParseReference(s, nil)
		if err == nil {
			t.Fatalf("ParseReference(%q) succeeded", s)
		}
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
}

// TestParseReferenceUppercase gives docker's reason for the most common
// mistake, naming the repository as docker does (without the registry, the
// tag or the digest).
func TestParseReferenceUppercase(t *testing.T) {
	t.Parallel()
	for s, repo := range map[string]string{
		"UPPER/Case":                    "UPPER/Case",
		"App:1":                         "App",
		"reg.example.com:5000/Team/app": "Team/app",
		"localhost/App@sha256:" + strings.Repeat("a", 64): "App",
	} {
		_, err := ParseReference(s, nil)
		want := "invalid reference format: repository name (" + repo + ") must be lowercase"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), s) {
			t.Errorf("ParseReference(%q) = %v, want an error naming %q and saying %q", s, err, s, want)
		}
		if !errors.Is(err, &name.ErrBadName{}) {
			t.Errorf("ParseReference(%q) = %v, not a name.ErrBadName", s, err)
		}
	}
}
