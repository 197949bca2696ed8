package builder

import (
	"os"
	"strings"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

// BaseRegistries lists the registries of the Dockerfile's FROM images, with
// ARG defaults and buildArgs ("K=V", or a bare "K" read through lookupEnv)
// substituted (see [BaseImages]): kaniko's --insecure-pull and
// --skip-tls-verify-pull name no host, so they apply to these. A Dockerfile that cannot be read or parsed
// gives none; the build reports it.
func BaseRegistries(dockerfile string, buildArgs []string, lookupEnv func(string) (string, bool)) []string {
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		return nil
	}
	args := map[string]string{}
	for _, a := range buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			v, _ = lookupEnv(k)
		}
		args[k] = v
	}
	images, err := BaseImages(b, args)
	if err != nil {
		return nil
	}
	var hosts []string
	for _, img := range images {
		if ref, err := registry.ParseReference(img, nil); err == nil {
			hosts = append(hosts, ref.Context().RegistryStr())
		}
	}
	return hosts
}
