package builder

import "fmt"

// RegistryHost says how the build reaches one registry when it pulls base
// images and caches.
type RegistryHost struct {
	// Mirrors are tried in order before the registry itself, as
	// "host[:port][/path]". The default is none.
	Mirrors []string
	// NoFallback stops pulls from falling back to the registry itself when
	// every mirror failed. The default is to fall back.
	NoFallback bool
	// PlainHTTP reaches the registry over HTTP. The default is HTTPS, except
	// for loopback registries.
	PlainHTTP bool
	// SkipTLSVerify accepts any server certificate. The default is to verify.
	SkipTLSVerify bool
	// CAFiles are PEM files of certificate authorities trusted on top of the
	// system pool. The default is none.
	CAFiles []string
	// ClientCerts are certificate and key file pairs for mutual TLS. The
	// default is none.
	ClientCerts []ClientCert
}

// ClientCert is a PEM certificate file and its key file.
type ClientCert struct {
	Cert, Key string
}

// WithRegistryHosts sets per-registry pull settings, keyed by registry host
// (host or host:port; "docker.io" for Docker Hub). Mirrors listed for a
// registry are themselves configured by their own entry. Settings given for
// a host several times are merged. The default is none.
func WithRegistryHosts(hosts map[string]RegistryHost) Option {
	return func(o *options) error {
		if o.hosts == nil {
			o.hosts = map[string]RegistryHost{}
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
