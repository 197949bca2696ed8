package builder

import (
	"bytes"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/sirupsen/logrus"
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

// warnOptionalDevices warns about each RUN --device without required=true.
// The worker has no CDI device support: BuildKit fails a step that requires
// a device, but runs one that merely asks for it without the device, and
// without a word.
func warnOptionalDevices(log logrus.FieldLogger, dfName string, df []byte) {
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		return // the frontend reports it
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return
	}
	for _, st := range stages {
		for _, c := range st.Commands {
			run, ok := c.(*instructions.RunCommand)
			if !ok {
				continue
			}
			line := 0
			if loc := run.Location(); len(loc) > 0 {
				line = loc[0].Start.Line
			}
			for _, d := range instructions.GetDevices(run) {
				if !d.Required {
					log.Warnf("%s:%d: RUN --device=%s runs without the device: imgbuild has no CDI device support (add required=true to fail instead)", dfName, line, d.Name)
				}
			}
		}
	}
}
