package registry

import (
	"fmt"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// ParseReference parses s as an image reference (tag or digest). A reference
// whose registry is listed in insecure is marked [name.Insecure], so it is
// reached over plain HTTP, like docker's --insecure-registry. An entry without
// a port matches that host on any port.
func ParseReference(s string, insecure []string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", s, explainBadReference(s, err))
	}
	if !isInsecure(ref.Context().RegistryStr(), insecure) {
		return ref, nil
	}
	ref, err = name.ParseReference(s, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", s, err)
	}
	return ref, nil
}

// uppercaseError is ggcr's error for a reference whose repository has
// capitals, told with docker's reason (ggcr says only "could not parse").
type uppercaseError struct {
	repo string
	err  error
}

func (e *uppercaseError) Error() string {
	return fmt.Sprintf("invalid reference format: repository name (%s) must be lowercase", e.repo)
}

func (e *uppercaseError) Unwrap() error { return e.err }

// explainBadReference adds docker's reason to err, ggcr's failure to parse
// s, when the repository has capitals. The repository is split off as ggcr's
// name.NewRepository does: the first path component is the registry if it is
// localhost or has a '.' or ':'.
func explainBadReference(s string, err error) error {
	repo, _, _ := strings.Cut(s, "@")
	if host, rest, ok := strings.Cut(repo, "/"); ok && (host == "localhost" || strings.ContainsAny(host, ".:")) {
		repo = rest
	}
	repo, _, _ = strings.Cut(repo, ":")
	if strings.ToLower(repo) == repo {
		return err
	}
	return &uppercaseError{repo: repo, err: err}
}

// isInsecure reports whether registry (host or host:port, as ggcr spells it)
// is in the insecure list.
func isInsecure(registry string, insecure []string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	for _, s := range insecure {
		if s == registry || s == host || canonicalRegistry(s) == registry {
			return true
		}
	}
	return false
}

// canonicalRegistry spells a registry the way ggcr does, so that
// "docker.io" in the insecure list matches "index.docker.io".
func canonicalRegistry(s string) string {
	r, err := name.NewRegistry(s)
	if err != nil {
		return s
	}
	return r.RegistryStr()
}

// withInsecure re-marks ref as insecure when its registry is in the list; refs
// parsed elsewhere (without ParseReference) get the same treatment.
func withInsecure(ref name.Reference, insecure []string) (name.Reference, error) {
	if len(insecure) == 0 || ref.Context().Scheme() == "http" {
		return ref, nil
	}
	return ParseReference(ref.String(), insecure)
}
