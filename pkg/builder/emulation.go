package builder

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/util/archutil"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// supportedPlatforms is what this host can run: its own platform and those
// binfmt_misc emulates (BuildKit runs a tiny binary of each to find out).
// A variable for tests.
var supportedPlatforms = func() []ocispecs.Platform { return archutil.SupportedPlatforms(false) }

// qemuNames are the binfmt_misc entries Debian's qemu-user-static
// registers, by GOARCH.
var qemuNames = map[string]string{
	"arm64": "qemu-aarch64", "arm": "qemu-arm", "amd64": "qemu-x86_64", "386": "qemu-i386",
	"riscv64": "qemu-riscv64", "ppc64le": "qemu-ppc64le", "s390x": "qemu-s390x", "mips64le": "qemu-mips64el",
	"loong64": "qemu-loongarch64",
}

// EmulationError is a build for a platform this host cannot run, whose
// Dockerfile runs that platform's binaries.
type EmulationError struct {
	Platform   string
	Stage      string
	Line       int
	Dockerfile string
	Supported  []string
}

func (e *EmulationError) Error() string {
	arch := strings.Split(strings.TrimPrefix(e.Platform, "linux/"), "/")[0]
	entry := qemuNames[arch]
	if entry == "" {
		entry = "qemu-" + arch
	}
	return fmt.Sprintf("%s:%d: RUN in stage %q runs %s binaries, and this host runs only %s: no binfmt_misc emulator is registered for %s. "+
		"Install Debian's qemu-user-static (apt-get install qemu-user-static; binfmt-support registers /proc/sys/fs/binfmt_misc/%s), "+
		"or build that stage FROM --platform=$BUILDPLATFORM and cross-compile",
		e.Dockerfile, e.Line, e.Stage, e.Platform, strings.Join(e.Supported, ", "), e.Platform, entry)
}

// checkEmulation fails, before any pull, a build for a platform whose RUN
// steps this host cannot run: without it BuildKit fails at the first such
// step, in a log line about a missing buildkit-qemu binary.
func checkEmulation(dfName string, df []byte, platform, target string) error {
	if platform == "" {
		return nil
	}
	p, err := platforms.Parse(platform)
	if err != nil {
		return fmt.Errorf("--platform %s: %w", platform, err)
	}
	p = platforms.Normalize(p)
	supported := supportedPlatforms()
	if platforms.Any(supported...).Match(p) {
		return nil
	}
	stage, line, ok := runsOnTarget(df, target)
	if !ok {
		return nil
	}
	var names []string
	for _, s := range supported {
		names = append(names, platforms.Format(s))
	}
	return &EmulationError{Platform: platforms.Format(p), Stage: stage, Line: line, Dockerfile: dfName, Supported: names}
}

// runsOnTarget finds the first RUN of a stage the target needs that runs on
// the target platform (not FROM --platform=$BUILDPLATFORM). A Dockerfile it
// cannot parse is left to the frontend, which says what is wrong with it.
func runsOnTarget(df []byte, target string) (stage string, line int, ok bool) {
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		return "", 0, false
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil || len(stages) == 0 {
		return "", 0, false
	}
	byName := map[string]int{}
	for i, s := range stages {
		if s.Name != "" {
			byName[strings.ToLower(s.Name)] = i
		}
	}
	last := len(stages) - 1
	if target != "" {
		i, found := byName[strings.ToLower(target)]
		if !found {
			return "", 0, false
		}
		last = i
	}
	// The stages the target needs: through FROM and COPY --from.
	need := map[int]bool{}
	var visit func(int)
	visit = func(i int) {
		if need[i] {
			return
		}
		need[i] = true
		if j, found := byName[strings.ToLower(stages[i].BaseName)]; found && j < i {
			visit(j)
		}
		for _, c := range stages[i].Commands {
			if cp, isCopy := c.(*instructions.CopyCommand); isCopy && cp.From != "" {
				if j, found := byName[strings.ToLower(cp.From)]; found {
					visit(j)
				}
			}
		}
	}
	visit(last)
	native := func(i int) bool {
		// A stage on another stage inherits its platform.
		for {
			pf := strings.ReplaceAll(strings.ReplaceAll(stages[i].Platform, "{", ""), "}", "")
			if pf != "" {
				return pf == "$BUILDPLATFORM"
			}
			j, found := byName[strings.ToLower(stages[i].BaseName)]
			if !found || j >= i {
				return false
			}
			i = j
		}
	}
	for i, s := range stages {
		if !need[i] || native(i) {
			continue
		}
		for _, c := range s.Commands {
			if r, isRun := c.(*instructions.RunCommand); isRun {
				name := s.Name
				if name == "" {
					name = fmt.Sprintf("%d", i)
				}
				l := 0
				if loc := r.Location(); len(loc) > 0 {
					l = loc[0].Start.Line
				}
				return name, l, true
			}
		}
	}
	return "", 0, false
}
