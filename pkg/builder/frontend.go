package builder

import (
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

var detectSyntax = parser.DetectSyntax

// isBuiltinFrontend reports whether a syntax reference names the official
// Dockerfile frontend (docker/dockerfile with any tag or digest), which the
// compiled-in frontend stands in for.
func isBuiltinFrontend(ref string) bool {
	repo := ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i >= 0 && !strings.Contains(repo[i:], "/") {
		repo = repo[:i]
	}
	switch repo {
	case "docker/dockerfile", "docker.io/docker/dockerfile", "index.docker.io/docker/dockerfile",
		"docker/dockerfile-upstream", "docker.io/docker/dockerfile-upstream":
		return true
	}
	return false
}
