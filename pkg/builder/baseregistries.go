package builder

import (
	"strings"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

// BaseRegistries lists the registries of the Dockerfile's FROM images, with
// ARG defaults and buildArgs ("K=V", or a bare "K" read through lookupEnv)
// substituted (see [BaseImages]): kaniko's --insecure-pull and
// --skip-tls-verify-pull name no host, so they apply to these. A Dockerfile
// that cannot be parsed gives none; the build reports it.
func BaseRegistries(dockerfile []byte, buildArgs []string, lookupEnv func(string) (string, bool)) []string {
	args := map[string]string{}
	for _, a := range buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			v, _ = lookupEnv(k)
		}
		args[k] = v
	}
	images, err := BaseImages(dockerfile, args)
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
