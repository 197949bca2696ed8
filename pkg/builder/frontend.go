package builder

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
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

// BaseImages lists the images a Dockerfile's stages start FROM, with ARG
// defaults before the first FROM and buildArgs substituted as the Dockerfile
// frontend does. Stages built on another stage and "scratch" are left out.
func BaseImages(dockerfile []byte, buildArgs map[string]string) ([]string, error) {
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, err
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, err
	}
	lex := shell.NewLex(res.EscapeToken)
	var env []string
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if v, ok := buildArgs[kv.Key]; ok {
				env = append(env, kv.Key+"="+v)
			} else if kv.Value != nil {
				v, _, err := lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(env))
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", a.Location()[0].Start.Line, err)
				}
				env = append(env, kv.Key+"="+v)
			}
		}
	}
	named := map[string]bool{}
	var images []string
	for _, st := range stages {
		base, _, err := lex.ProcessWord(st.BaseName, shell.EnvsFromSlice(env))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", st.Location[0].Start.Line, err)
		}
		if !named[strings.ToLower(base)] && base != "scratch" && base != "" {
			images = append(images, base)
		}
		if st.Name != "" {
			named[strings.ToLower(st.Name)] = true
		}
	}
	return images, nil
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
