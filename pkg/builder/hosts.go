package builder

import (
	"math"
	"net"
	"net/http"
	"sync"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/moby/buildkit/util/resolver"
	resolverconfig "github.com/moby/buildkit/util/resolver/config"
)

// registryHosts tells BuildKit how to reach each registry it pulls from (base
// images, cache imports). Loopback registries speak plain HTTP, as in docker;
// hosts named with --insecure-registry get TLS without verification and an
// HTTP fallback, also as in docker. Mirrors come first, then the registry
// itself unless its fallback is turned off. Results are memoised per host so
// that connections are reused across pulls. With sources set, every
// host records where the blobs it serves come from (see [sourceRecorder]).
func registryHosts(o *options, sources *blobSources) docker.RegistryHosts {
	cfg := map[string]resolverconfig.RegistryConfig{}
	noFallback := map[string]bool{}
	yes := true
	for h, c := range o.hosts {
		rc := resolverconfig.RegistryConfig{Mirrors: c.Mirrors, RootCAs: c.CAFiles}
		for _, kp := range c.ClientCerts {
			rc.KeyPairs = append(rc.KeyPairs, resolverconfig.TLSKeyPair{Certificate: kp.Cert, Key: kp.Key})
		}
		if c.PlainHTTP {
			rc.PlainHTTP = &yes
		}
		if c.SkipTLSVerify {
			rc.Insecure = &yes
		}
		cfg[h] = rc
		noFallback[h] = c.NoFallback && len(c.Mirrors) > 0
	}
	for _, h := range o.insecure {
		rc := cfg[canonicalHost(h)]
		rc.Insecure, rc.PlainHTTP = &yes, &yes
		cfg[canonicalHost(h)] = rc
	}
	limits := o.limits.resolved()
	// containerd's resolver refuses manifests over its own bound (as "not
	// found"); a larger --max-manifest-size must hold there too. It is a
	// process-wide setting, and a process has one builder.
	if limits.ManifestSize == 0 {
		docker.MaxManifestSize = math.MaxInt64
	} else if limits.ManifestSize > docker.MaxManifestSize {
		docker.MaxManifestSize = limits.ManifestSize
	}
	attempts := pullAttempts
	if o.pullRetries != nil {
		attempts = *o.pullRetries + 1
	}
	var mu sync.Mutex
	memo := map[string][]docker.RegistryHost{}
	return func(host string) ([]docker.RegistryHost, error) {
		mu.Lock()
		defer mu.Unlock()
		if hs, ok := memo[host]; ok {
			return hs, nil
		}
		// NewRegistryConfig only answers for hosts in its map (an empty
		// entry gives the defaults: HTTPS, plain HTTP for localhost), and
		// configures mirrors from their own entries.
		m := make(map[string]resolverconfig.RegistryConfig, len(cfg)+1)
		for k, v := range cfg {
			m[k] = v
		}
		c, ok := cfg[host]
		if !ok {
			// An entry without a port matches the host on any port, as
			// for pushes.
			if h, _, err := net.SplitHostPort(host); err == nil {
				c = cfg[h]
				noFallback[host] = noFallback[h]
			}
		}
		m[host] = c
		hs, err := resolver.NewRegistryConfig(m)(host)
		if err != nil {
			return nil, err
		}
		if noFallback[host] && len(hs) > 1 {
			hs = hs[:len(hs)-1] // the registry itself comes last
		}
		for i := range hs {
			hs[i].Client = withLimits(withSourceRecorder(withPullRetry(hs[i].Client, attempts), sources), limits)
		}
		memo[host] = hs
		return hs, nil
	}
}

// withPullRetry returns a copy of c whose requests go through [pullRetry],
// tried up to attempts times.
func withPullRetry(c *http.Client, attempts int) *http.Client {
	if c == nil {
		c = &http.Client{}
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cc := *c
	cc.Transport = &pullRetry{next: rt, backoff: pullBackoff, attempts: attempts}
	return &cc
}
