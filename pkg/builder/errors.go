package builder

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/grpcerrors"
)

// missingSource matches BuildKit's report of a COPY/ADD source absent from
// the context, whose cache-key and ref-ID wording means nothing to a user.
var missingSource = regexp.MustCompile(`failed to calculate checksum of ref [^ ]+: "([^"]*)": not found`)

// limitText matches a [limitError]'s text, which reaches buildError as a
// string through BuildKit's gRPC.
var limitText = regexp.MustCompile(`, over the (layer size|image size|manifest size|config size|layer count) limit of `)

// BuildError is a failed build, in terms a user can act on: the message,
// the Dockerfile lines at fault and, for a failed RUN, its exit code.
type BuildError struct {
	// Message is BuildKit's error with its gRPC and stack wrapping removed.
	Message string
	// Snippet shows the Dockerfile lines at fault, as buildx prints them.
	Snippet string
	// ExitCode is the failed RUN step's exit code; 0 when no RUN failed.
	ExitCode int
	// Limit names the limit (see [WithLimits]) a pulled image exceeded;
	// empty when none did.
	Limit LimitKind
	err   error
}

func (e *BuildError) Error() string {
	if e.Snippet == "" {
		return e.Message
	}
	return e.Snippet + e.Message
}

// Unwrap returns BuildKit's error.
func (e *BuildError) Unwrap() error { return e.err }

// buildError turns a Solve error into a BuildError whose message names the
// Dockerfile (by the path the user gave) and line.
func buildError(err error, dockerfile string) error {
	be := &BuildError{err: err}
	var exit *gatewaypb.ExitError
	if errors.As(err, &exit) {
		be.ExitCode = int(exit.ExitCode)
	}
	msg := grpcerrors.FromGRPC(err).Error()
	msg = strings.TrimPrefix(msg, "failed to solve: ")
	if m := missingSource.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("%q not found in the build context (or excluded by .dockerignore)", m[1])
	}
	var snippet bytes.Buffer
	for _, s := range errdefs.Sources(err) {
		if s.Info != nil && (s.Info.Filename == "Dockerfile" || strings.HasSuffix(dockerfile, s.Info.Filename)) {
			s.Info.Filename = dockerfile
		}
		if s.Info != nil && len(s.Ranges) > 0 && !strings.Contains(msg, s.Info.Filename+":") {
			msg = fmt.Sprintf("%s:%d: %s", s.Info.Filename, s.Ranges[0].Start.Line, msg)
		}
		_ = s.Print(&snippet)
	}
	if m := limitText.FindStringSubmatch(msg); m != nil {
		be.Limit = LimitKind(m[1])
	}
	be.Message = msg
	be.Snippet = snippet.String()
	return be
}

// ExternalFrontendError is a Dockerfile whose syntax directive (or
// BUILDKIT_SYNTAX build arg) names a frontend image other than
// docker/dockerfile while external frontends are not allowed
// ([WithExternalFrontends]).
type ExternalFrontendError struct {
	Where string // FILE:LINE, or the build arg
	Ref   string // the frontend image
}

// Error implements error.
func (e *ExternalFrontendError) Error() string {
	return fmt.Sprintf("%s: external frontend %q refused: imgbuild runs its built-in Dockerfile frontend", e.Where, e.Ref)
}
