package registry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// CheckCredentials signs in to server with username and password, as
// `docker login` does before it stores them: a token registry must issue a
// token, a basic-auth registry must answer /v2/ with 200. opts supplies the
// transport settings (Insecure, Hosts, Transport).
func CheckCredentials(ctx context.Context, server, username, password string, opts Options) error {
	var nopts []name.Option
	if isInsecure(server, opts.Insecure) {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(server, nopts...)
	if err != nil {
		return fmt.Errorf("registry %q: %w", server, err)
	}
	rt := opts.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	if rt, err = hostTransports(rt, opts.Insecure, opts.Hosts); err != nil {
		return err
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	t, err := transport.NewWithContext(ctx, reg, auth, rt, nil)
	if err != nil {
		return fmt.Errorf("signing in to %s: %w", reg.RegistryStr(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return fmt.Errorf("signing in to %s: %w", reg.RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fmt.Errorf("signing in to %s: %w", reg.RegistryStr(), err)
	}
	return nil
}
