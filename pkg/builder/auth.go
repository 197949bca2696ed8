package builder

import (
	"context"
	"fmt"

	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
)

// authProvider answers BuildKit's credential requests (base image pulls,
// cache import/export) from the same go-containerregistry keychain that
// pushes use, so one identity serves the whole build.
func authProvider(kc authn.Keychain) session.Attachable {
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: func(_ context.Context, host string, _ []string, _ authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
			if host == "registry-1.docker.io" {
				host = name.DefaultRegistry
			}
			reg, err := name.NewRegistry(host, name.WeakValidation)
			if err != nil {
				return types.AuthConfig{}, fmt.Errorf("registry %s: %w", host, err)
			}
			a, err := kc.Resolve(reg)
			if err != nil {
				return types.AuthConfig{}, fmt.Errorf("resolving credentials for %s: %w", host, err)
			}
			c, err := a.Authorization()
			if err != nil {
				return types.AuthConfig{}, fmt.Errorf("resolving credentials for %s: %w", host, err)
			}
			return types.AuthConfig{
				Username:      c.Username,
				Password:      c.Password,
				Auth:          c.Auth,
				IdentityToken: c.IdentityToken,
				RegistryToken: c.RegistryToken,
				ServerAddress: host,
			}, nil
		},
	})
}
