// Package kaniko holds kaniko's conventions that are more than flag names:
// its build context specs (directories, tarballs, git repositories). The
// flags themselves are mapped in the CLI; nothing here imports it, nor
// BuildKit.
package kaniko

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
)

// ContextOptions say how [FetchContext] reaches a context.
type ContextOptions struct {
	// SubPath is kaniko's --context-sub-path: the build context is this
	// directory inside the fetched one. The default is the whole context.
	SubPath string
	// Stdin is read for tar://stdin.
	Stdin io.Reader
	// Getenv reads GIT_TOKEN, GIT_USERNAME, GIT_PASSWORD and
	// GIT_PULL_METHOD. The default is os.Getenv.
	Getenv func(string) string
	// Git are kaniko's --git options ("branch=B,single-branch=true,...").
	Git []string
}

// FetchContext turns one of kaniko's context specs (dir://PATH or a plain
// path, tar://PATH.tar[.gz|.zst], tar://stdin, git://HOST/REPO[#REF[#COMMIT]])
// into a local directory. Fetched contexts (tar, git) go to a temporary
// directory that cleanup removes; cleanup is never nil. Errors name the spec,
// with credentials redacted.
func FetchContext(ctx context.Context, spec string, o ContextOptions) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	kind, rest, err := contextSource(spec)
	if err != nil {
		return "", cleanup, err
	}
	switch kind {
	case "tar":
		r := o.Stdin
		if rest != "stdin" {
			f, err := os.Open(rest)
			if err != nil {
				return "", cleanup, fmt.Errorf("%s: %w", spec, err)
			}
			defer f.Close()
			r = f
		} else if r == nil {
			return "", cleanup, fmt.Errorf("%s: no standard input", spec)
		}
		dir, cleanup, err = extractContext(ctx, r)
		if err != nil {
			return "", cleanup, fmt.Errorf("%s: %w", spec, err)
		}
	case "git":
		dir, cleanup, err = cloneContext(ctx, rest, o.Git, o.Getenv)
		if err != nil {
			return "", cleanup, fmt.Errorf("%s: %w", redactURL(spec), err)
		}
	default:
		dir = rest
		fi, err := os.Stat(dir)
		if err != nil {
			return "", cleanup, fmt.Errorf("%s: %w", spec, err)
		}
		if !fi.IsDir() {
			return "", cleanup, fmt.Errorf("%s is not a directory", spec)
		}
	}
	if o.SubPath != "" {
		sub := filepath.Join(dir, filepath.Clean("/"+o.SubPath))
		if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
			cleanup()
			return "", func() {}, &SubPathError{SubPath: o.SubPath}
		}
		dir = sub
	}
	return dir, cleanup, nil
}

// SubPathError is a context sub-path that is not a directory of the context.
type SubPathError struct{ SubPath string }

// Error implements error.
func (e *SubPathError) Error() string {
	return fmt.Sprintf("%s: no such directory in the context", e.SubPath)
}

// contextSource splits kaniko's --context into its kind (dir, tar or git)
// and the rest: a directory, a tar file or "stdin", or git's HOST/PATH#REF.
// A bare path is a directory.
func contextSource(spec string) (kind, rest string, err error) {
	switch {
	case strings.HasPrefix(spec, "tar://"):
		return "tar", strings.TrimPrefix(spec, "tar://"), nil
	case strings.HasPrefix(spec, "git://"):
		return "git", strings.TrimPrefix(spec, "git://"), nil
	case strings.HasPrefix(spec, "dir://"):
		return "dir", strings.TrimPrefix(spec, "dir://"), nil
	case strings.Contains(spec, "://"):
		scheme, _, _ := strings.Cut(spec, "://")
		return "", "", fmt.Errorf("%s: %s:// contexts are not supported (use dir://, tar:// or git://)", redactURL(spec), scheme)
	}
	return "dir", spec, nil
}

// extractContext unpacks a (gzip, zstd or plain) tar into a new directory
// with containerd's archive code, which refuses entries that escape it.
func extractContext(ctx context.Context, r io.Reader) (string, func(), error) {
	dir, err := os.MkdirTemp("", "imgbuild-context-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	ds, err := compression.DecompressStream(r)
	if err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("reading archive: %w", err)
	}
	defer ds.Close()
	if _, err := archive.Apply(ctx, dir, ds, archive.WithNoSameOwner()); err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("extracting archive: %w", err)
	}
	return dir, cleanup, nil
}

// userinfo is the "user:password@" of a URL in free text (git quotes URLs in
// its messages, so URL parsing of whitespace-separated words is not enough).
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#'"]*@`)

// redactURL hides the user information of any URL in s: with GIT_TOKEN the
// token is the user name, so the password alone is not enough.
func redactURL(s string) string {
	return userinfo.ReplaceAllString(s, "${1}xxxxx@")
}
