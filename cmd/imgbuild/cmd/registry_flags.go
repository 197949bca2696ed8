package cmd

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	// Set by executor: kaniko's --push-retry (0: the default backoff) and
	// --image-download-retry (nil: the builder's default).
	pushRetry int
	pullRetry *int

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

// hosts parses the per-host flags into one setting per registry host,
// used for pulls and pushes alike.
func (r *registryFlags) hosts() (map[string]registry.HostConfig, error) {
	hosts := map[string]registry.HostConfig{}
	for _, h := range r.skipTLSVerify {
		if h == "" {
			return nil, fmt.Errorf("--skip-tls-verify-registry: empty host")
		}
		c := hosts[h]
		c.SkipTLSVerify = true
		hosts[h] = c
	}
	for _, v := range r.certificates {
		h, file, ok := strings.Cut(v, "=")
		if !ok || h == "" || file == "" {
			return nil, fmt.Errorf("--registry-certificate %q: want HOST=CA.pem", v)
		}
		c := hosts[h]
		c.CAFiles = append(c.CAFiles, file)
		hosts[h] = c
	}
	for _, v := range r.clientCerts {
		h, files, ok := strings.Cut(v, "=")
		cert, key, ok2 := strings.Cut(files, ",")
		if !ok || !ok2 || h == "" || cert == "" || key == "" {
			return nil, fmt.Errorf("--registry-client-cert %q: want HOST=CERT.pem,KEY.pem", v)
		}
		c := hosts[h]
		c.ClientCerts = append(c.ClientCerts, registry.ClientCert{Cert: cert, Key: key})
		hosts[h] = c
	}
	// kaniko turns --registry-mirror into --registry-map index.docker.io=M.
	addMirror := func(orig, mirror string) {
		c := hosts[orig]
		c.Mirrors = append(c.Mirrors, mirror)
		c.NoFallback = r.noFallback
		hosts[orig] = c
	}
	for _, m := range r.mirrors {
		if m == "" {
			return nil, fmt.Errorf("--registry-mirror: empty mirror")
		}
		addMirror("docker.io", m)
	}
	for _, v := range r.maps {
		for _, pair := range strings.Split(v, ";") {
			orig, mirror, ok := strings.Cut(pair, "=")
			if !ok || orig == "" || mirror == "" {
				return nil, fmt.Errorf("--registry-map %q: want ORIG=NEW[;ORIG=NEW...]", v)
			}
			addMirror(orig, mirror)
		}
	}
	// Validate certificate files now, before a build starts.
	keys := make([]string, 0, len(hosts))
	for h := range hosts {
		keys = append(keys, h)
	}
	sort.Strings(keys)
	for _, h := range keys {
		if _, err := hosts[h].TLSConfig(); err != nil {
			return nil, fmt.Errorf("registry %s: %w", h, err)
		}
	}
	return hosts, nil
}

// registryOptions are the options for pushes.
func (r *registryFlags) registryOptions() (registry.Options, error) {
	o, _, err := r.options()
	return o, err
}

// options are the options for pushes and for the pulls inside the build,
// from one parse of the flags.
func (r *registryFlags) options() (registry.Options, []builder.Option, error) {
	hosts, err := r.hosts()
	if err != nil {
		return registry.Options{}, nil, err
	}
	kc := r.keychainOnce()
	o := registry.Options{Insecure: r.insecure, Hosts: hosts, Keychain: kc}
	if r.pushRetry > 0 {
		// kaniko's pace: 1 s, doubling.
		o.RetryBackoff = &remote.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: r.pushRetry + 1}
	}
	bopts := []builder.Option{
		builder.WithInsecureRegistries(r.insecure...),
		builder.WithKeychain(kc),
		builder.WithRegistryHosts(hosts),
	}
	if r.pullRetry != nil {
		bopts = append(bopts, builder.WithPullRetries(*r.pullRetry))
	}
	return o, bopts, nil
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
