package cmd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// registryFlags are the registry access flags shared by every command that
// pulls or pushes: one set of flags, applied to base-image pulls, cache
// import/export and pushes alike. Names and value syntax follow kaniko's.
type registryFlags struct {
	insecure      []string
	skipTLSVerify []string
	certificates  []string // HOST=CA.pem
	clientCerts   []string // HOST=CERT,KEY
	mirrors       []string // for Docker Hub
	maps          []string // ORIG=NEW[;ORIG=NEW]
	noFallback    bool

	keychain authn.Keychain // made once, shared by pulls and pushes
}

// keychainOnce returns the keychain shared by the build's pulls and its
// pushes.
func (r *registryFlags) keychainOnce() authn.Keychain {
	if r.keychain == nil {
		r.keychain = registry.NewKeychain()
	}
	return r.keychain
}

func (r *registryFlags) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&r.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP or unverified TLS (repeatable)")
	f.StringArrayVar(&r.skipTLSVerify, "skip-tls-verify-registry", nil, "registry host whose TLS certificate is not verified, for pulls and pushes (repeatable)")
	f.StringArrayVar(&r.certificates, "registry-certificate", nil, `"HOST=CA.pem": also trust this CA for the registry (repeatable)`)
	f.StringArrayVar(&r.clientCerts, "registry-client-cert", nil, `"HOST=CERT.pem,KEY.pem": client certificate for mutual TLS with the registry (repeatable)`)
	f.StringArrayVar(&r.mirrors, "registry-mirror", nil, `mirror "HOST[/PATH]" for Docker Hub pulls, tried in order before Docker Hub (repeatable)`)
	f.StringArrayVar(&r.maps, "registry-map", nil, `"ORIG=NEW[;ORIG=NEW...]": pull ORIG's images from the mirror NEW first (repeatable; mirrors are tried in order, then ORIG)`)
	f.BoolVar(&r.noFallback, "skip-default-registry-fallback", false, "fail a pull when every mirror failed instead of falling back to the original registry")
}

// hosts parses the per-host flags into push and pull settings.
func (r *registryFlags) hosts() (map[string]registry.HostConfig, map[string]builder.RegistryHost, error) {
	push := map[string]registry.HostConfig{}
	pull := map[string]builder.RegistryHost{}
	for _, h := range r.skipTLSVerify {
		if h == "" {
			return nil, nil, fmt.Errorf("--skip-tls-verify-registry: empty host")
		}
		c := push[h]
		c.SkipTLSVerify = true
		push[h] = c
		p := pull[h]
		p.SkipTLSVerify = true
		pull[h] = p
	}
	for _, v := range r.certificates {
		h, file, ok := strings.Cut(v, "=")
		if !ok || h == "" || file == "" {
			return nil, nil, fmt.Errorf("--registry-certificate %q: want HOST=CA.pem", v)
		}
		c := push[h]
		c.CAFiles = append(c.CAFiles, file)
		push[h] = c
		p := pull[h]
		p.CAFiles = append(p.CAFiles, file)
		pull[h] = p
	}
	for _, v := range r.clientCerts {
		h, files, ok := strings.Cut(v, "=")
		cert, key, ok2 := strings.Cut(files, ",")
		if !ok || !ok2 || h == "" || cert == "" || key == "" {
			return nil, nil, fmt.Errorf("--registry-client-cert %q: want HOST=CERT.pem,KEY.pem", v)
		}
		c := push[h]
		c.ClientCerts = append(c.ClientCerts, registry.ClientCert{Cert: cert, Key: key})
		push[h] = c
		p := pull[h]
		p.ClientCerts = append(p.ClientCerts, builder.ClientCert{Cert: cert, Key: key})
		pull[h] = p
	}
	// kaniko turns --registry-mirror into --registry-map index.docker.io=M.
	addMirror := func(orig, mirror string) {
		p := pull[orig]
		p.Mirrors = append(p.Mirrors, mirror)
		p.NoFallback = r.noFallback
		pull[orig] = p
	}
	for _, m := range r.mirrors {
		if m == "" {
			return nil, nil, fmt.Errorf("--registry-mirror: empty mirror")
		}
		addMirror("docker.io", m)
	}
	for _, v := range r.maps {
		for _, pair := range strings.Split(v, ";") {
			orig, mirror, ok := strings.Cut(pair, "=")
			if !ok || orig == "" || mirror == "" {
				return nil, nil, fmt.Errorf("--registry-map %q: want ORIG=NEW[;ORIG=NEW...]", v)
			}
			addMirror(orig, mirror)
		}
	}
	// Validate certificate files now, before a build starts.
	keys := make([]string, 0, len(push))
	for h := range push {
		keys = append(keys, h)
	}
	sort.Strings(keys)
	for _, h := range keys {
		if _, err := push[h].TLSConfig(); err != nil {
			return nil, nil, fmt.Errorf("registry %s: %w", h, err)
		}
	}
	return push, pull, nil
}

// registryOptions are the options for pushes.
func (r *registryFlags) registryOptions() (registry.Options, error) {
	push, _, err := r.hosts()
	if err != nil {
		return registry.Options{}, err
	}
	return registry.Options{Insecure: r.insecure, Hosts: push, Keychain: r.keychainOnce()}, nil
}

// builderOptions are the options for pulls inside the build. Flag errors
// are reported by registryOptions, which runs first.
func (r *registryFlags) builderOptions() []builder.Option {
	opts := []builder.Option{
		builder.WithInsecureRegistries(r.insecure...),
		builder.WithKeychain(r.keychainOnce()),
	}
	if _, pull, err := r.hosts(); err == nil {
		opts = append(opts, builder.WithRegistryHosts(pull))
	}
	return opts
}

// routeRegistryLogs sends go-containerregistry's warnings (retries) to log
// at warn level and, when log is at debug level, its debug log (requests
// and responses, with credentials and token bodies redacted by ggcr) at
// debug level.
func routeRegistryLogs(log *logrus.Logger) {
	logs.Warn.SetFlags(0) // logrus adds the time
	logs.Warn.SetOutput(log.WriterLevel(logrus.WarnLevel))
	if log.IsLevelEnabled(logrus.DebugLevel) {
		logs.Debug.SetFlags(0)
		logs.Debug.SetOutput(log.WriterLevel(logrus.DebugLevel))
	}
}
