package builder

import (
	"fmt"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

// WithRegistryHosts sets per-registry pull settings, keyed by registry host
// (host or host:port; "docker.io" for Docker Hub). Mirrors listed for a
// registry are themselves configured by their own entry. Settings given for
// a host several times are merged. The default is none.
func WithRegistryHosts(hosts map[string]registry.HostConfig) Option {
	return func(o *options) error {
		if o.hosts == nil {
			o.hosts = map[string]registry.HostConfig{}
		}
		for h, c := range hosts {
			if h == "" {
				return fmt.Errorf("registry settings for an empty host name")
			}
			h = canonicalHost(h)
			old := o.hosts[h]
			old.Mirrors = append(old.Mirrors, c.Mirrors...)
			old.NoFallback = old.NoFallback || c.NoFallback
			old.PlainHTTP = old.PlainHTTP || c.PlainHTTP
			old.SkipTLSVerify = old.SkipTLSVerify || c.SkipTLSVerify
			old.CAFiles = append(old.CAFiles, c.CAFiles...)
			old.ClientCerts = append(old.ClientCerts, c.ClientCerts...)
			o.hosts[h] = old
		}
		return nil
	}
}

// canonicalHost spells Docker Hub the way BuildKit asks for it.
func canonicalHost(h string) string {
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}
