package registry

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	ecr "github.com/awslabs/amazon-ecr-credential-helper/ecr-login"
	acr "github.com/chrismellard/docker-credential-acr-env/pkg/credhelper"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/github"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/google"
)

// NewKeychain returns the one keychain imgbuild uses for base-image pulls,
// cache import/export and pushes. It tries, in order:
//   - docker's config.json ($DOCKER_CONFIG, else ~/.docker): auths,
//     credHelpers and credsStore;
//   - $REGISTRY_AUTH_FILE, podman's and buildah's auth.json;
//   - Amazon ECR (*.dkr.ecr.*.amazonaws.com): the AWS SDK's credential
//     chain (environment, IRSA web identity, instance role);
//   - Google Artifact Registry and GCR: application default credentials,
//     workload identity through the metadata server, gcloud;
//   - Azure Container Registry (*.azurecr.io): a service principal or
//     workload identity from AZURE_* environment variables;
//   - GitHub Container Registry (ghcr.io): $GITHUB_TOKEN.
//
// Each cloud keychain answers only for its own registries, so the first
// one holding credentials for a registry wins; none of them needs a helper
// binary.
func NewKeychain() authn.Keychain {
	return authn.NewMultiKeychain(
		authn.DefaultKeychain,
		authFileKeychain{},
		authn.NewKeychainFromHelper(ecr.NewECRHelper(ecr.WithLogger(io.Discard))),
		google.Keychain,
		authn.NewKeychainFromHelper(acr.NewACRCredentialsHelper()),
		github.Keychain,
	)
}

// authFileKeychain reads $REGISTRY_AUTH_FILE, the containers-auth.json that
// podman, buildah and skopeo write. Its format is docker's config.json.
// ggcr's default keychain reads it only when there is no docker config.
type authFileKeychain struct{}

// Resolve implements authn.Keychain.
func (authFileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	path := os.Getenv("REGISTRY_AUTH_FILE")
	if path == "" {
		return authn.Anonymous, nil
	}
	f, err := os.Open(filepath.Clean(path))
	if os.IsNotExist(err) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading $REGISTRY_AUTH_FILE: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading $REGISTRY_AUTH_FILE %s: %w", path, err)
	}
	return fromConfigFile(cf, target)
}

// fromConfigFile looks target up the way docker does: by repository, then
// by registry, with Docker Hub under its legacy key.
func fromConfigFile(cf *configfile.ConfigFile, target authn.Resource) (authn.Authenticator, error) {
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		c, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("reading credentials for %s: %w", target.RegistryStr(), err)
		}
		// podman writes Docker Hub as "docker.io", which docker's lookup
		// maps away to its legacy key.
		if target.RegistryStr() == name.DefaultRegistry && c.Username == "" && c.Password == "" {
			for _, k := range []string{"docker.io", name.DefaultRegistry} {
				if ac, ok := cf.AuthConfigs[k]; ok {
					c = ac
					break
				}
			}
		}
		c.ServerAddress = ""
		if c != (types.AuthConfig{}) {
			return authn.FromConfig(authn.AuthConfig{
				Username:      c.Username,
				Password:      c.Password,
				Auth:          c.Auth,
				IdentityToken: c.IdentityToken,
				RegistryToken: c.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// ResolveContext implements authn.ContextKeychain.
func (k authFileKeychain) ResolveContext(_ context.Context, target authn.Resource) (authn.Authenticator, error) {
	return k.Resolve(target)
}

var _ authn.ContextKeychain = authFileKeychain{}

// Login records credentials for server in docker's config.json
// ($DOCKER_CONFIG, else ~/.docker), through the configured credential store
// or helper when there is one, as `docker login` does. It returns the file
// written.
func Login(server, username, password string) (string, error) {
	cf, key, err := loadDockerConfig(server)
	if err != nil {
		return "", err
	}
	store := cf.GetCredentialsStore(key)
	if err := store.Store(types.AuthConfig{ServerAddress: key, Username: username, Password: password}); err != nil {
		return "", fmt.Errorf("storing credentials for %s: %w", server, err)
	}
	if err := cf.Save(); err != nil {
		return "", fmt.Errorf("saving %s: %w", cf.Filename, err)
	}
	return cf.Filename, nil
}

// Logout removes server's credentials from docker's config.json and its
// credential store. It reports whether there were any.
func Logout(server string) (bool, error) {
	cf, key, err := loadDockerConfig(server)
	if err != nil {
		return false, err
	}
	_, inFile := cf.AuthConfigs[key]
	store := cf.GetCredentialsStore(key)
	c, err := store.Get(key)
	if err != nil {
		return false, fmt.Errorf("reading credentials for %s: %w", server, err)
	}
	had := inFile || c.Username != "" || c.Password != "" || c.IdentityToken != ""
	if !had {
		return false, nil
	}
	if err := store.Erase(key); err != nil {
		return false, fmt.Errorf("removing credentials for %s: %w", server, err)
	}
	delete(cf.AuthConfigs, key)
	if err := cf.Save(); err != nil {
		return false, fmt.Errorf("saving %s: %w", cf.Filename, err)
	}
	return true, nil
}

// loadDockerConfig loads docker's config.json and returns the key server's
// credentials live under: Docker Hub keeps its legacy URL.
func loadDockerConfig(server string) (*configfile.ConfigFile, string, error) {
	reg, err := name.NewRegistry(server)
	if err != nil {
		return nil, "", fmt.Errorf("registry %q: %w", server, err)
	}
	key := reg.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	cf, err := config.Load(os.Getenv("DOCKER_CONFIG"))
	if err != nil {
		return nil, "", fmt.Errorf("loading docker config: %w", err)
	}
	return cf, key, nil
}
