package registry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// CheckPush asks each repository of refs whether these credentials may
// push to it, before there is anything to push, so that a build bound for
// a repository it cannot write to fails before it starts; kaniko does the
// same (remote.CheckPushPermission). A push token alone proves nothing on
// some registries (Docker Hub grants it and then refuses the upload), so
// each repository gets the first request of a blob upload, which is then
// cancelled. The error names the reference and the registry's answer.
//
// It is ggcr's check with the pusher's transport (TLS settings, retries)
// and with ctx, which ggcr's does not take.
func (p *Pusher) CheckPush(ctx context.Context, refs []name.Reference) error {
	seen := map[string]bool{}
	for _, ref := range refs {
		ref, err := withInsecure(ref, p.insecure)
		if err != nil {
			return err
		}
		repo := ref.Context()
		if seen[repo.String()] {
			continue
		}
		seen[repo.String()] = true
		if err := p.checkRepo(ctx, repo); err != nil {
			return fmt.Errorf("checking push permission for %s: %w", ref, err)
		}
	}
	return nil
}

func (p *Pusher) checkRepo(ctx context.Context, repo name.Repository) error {
	auth, err := authn.Resolve(ctx, p.keychain, repo)
	if err != nil {
		return fmt.Errorf("resolving credentials for %s: %w", repo.RegistryStr(), err)
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, p.transport, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: tr}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/uploads/", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusAccepted, http.StatusCreated); err != nil {
		return err
	}
	// The upload is only a probe: give back what the registry set aside.
	if loc, err := resp.Location(); err == nil {
		if del, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc.String(), nil); err == nil {
			if r, err := client.Do(del); err == nil {
				r.Body.Close()
			}
		}
	}
	return nil
}
