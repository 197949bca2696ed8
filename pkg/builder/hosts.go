package builder

import (
	"sync"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/moby/buildkit/util/resolver"
	resolverconfig "github.com/moby/buildkit/util/resolver/config"
)

// registryHosts tells BuildKit how to reach each registry it pulls from (base
// images, cache imports). Loopback registries speak plain HTTP, as in docker;
// hosts named with --insecure-registry get TLS without verification and an
// HTTP fallback, also as in docker. Results are memoised per host so that
// connections are reused across pulls.
func registryHosts(insecure []string) docker.RegistryHosts {
	cfg := map[string]resolverconfig.RegistryConfig{}
	yes := true
	for _, h := range insecure {
		cfg[h] = resolverconfig.RegistryConfig{Insecure: &yes, PlainHTTP: &yes}
	}
	var mu sync.Mutex
	memo := map[string][]docker.RegistryHost{}
	return func(host string) ([]docker.RegistryHost, error) {
		mu.Lock()
		defer mu.Unlock()
		if hs, ok := memo[host]; ok {
			return hs, nil
		}
		// NewRegistryConfig only answers for hosts in its map; an empty entry
		// gives the defaults (HTTPS, plain HTTP for localhost).
		hs, err := resolver.NewRegistryConfig(map[string]resolverconfig.RegistryConfig{host: cfg[host]})(host)
		if err != nil {
			return nil, err
		}
		memo[host] = hs
		return hs, nil
	}
}
