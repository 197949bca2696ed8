// Package kaniko holds kaniko's conventions that are more than flag names:
// its build context specs (directories, tarballs, git repositories) and how
// its registry-wide switches find the registries a Dockerfile pulls from.
// The flags themselves are mapped in the CLI; nothing here imports it.
package kaniko

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	switch {
	case strings.HasPrefix(spec, "tar://"):
		src := strings.TrimPrefix(spec, "tar://")
		r := o.Stdin
		if src != "stdin" {
			f, err := os.Open(src)
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
	case strings.HasPrefix(spec, "git://"):
		dir, cleanup, err = cloneContext(ctx, strings.TrimPrefix(spec, "git://"), o.Git, o.Getenv)
		if err != nil {
			return "", cleanup, fmt.Errorf("%s: %w", redactURL(spec), err)
		}
	case strings.Contains(spec, "://") && !strings.HasPrefix(spec, "dir://"):
		scheme, _, _ := strings.Cut(spec, "://")
		return "", cleanup, fmt.Errorf("%s: %s:// contexts are not supported (use dir://, tar:// or git://)", spec, scheme)
	default:
		dir = strings.TrimPrefix(spec, "dir://")
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

// cloneContext clones kaniko's git://HOST/PATH[#REF[#COMMIT]] context. Like
// kaniko, the transport is HTTPS unless GIT_PULL_METHOD=http, and
// credentials come from GIT_TOKEN or GIT_USERNAME/GIT_PASSWORD; they are put
// in the URL given to git (never on a command line visible in logs here).
func cloneContext(ctx context.Context, spec string, gitOpts []string, getenv func(string) string) (string, func(), error) {
	repo, rest, _ := strings.Cut(spec, "#")
	ref, commit, _ := strings.Cut(rest, "#")
	scheme := "https"
	if getenv("GIT_PULL_METHOD") == "http" {
		scheme = "http"
	}
	u, err := url.Parse(scheme + "://" + repo)
	if err != nil {
		return "", func() {}, err
	}
	if tok := getenv("GIT_TOKEN"); tok != "" {
		u.User = url.UserPassword(tok, "x-oauth-basic")
	} else if user := getenv("GIT_USERNAME"); user != "" {
		u.User = url.UserPassword(user, getenv("GIT_PASSWORD"))
	}
	opts := map[string]string{}
	for _, o := range gitOpts {
		for _, kv := range strings.Split(o, ",") {
			k, v, _ := strings.Cut(kv, "=")
			opts[k] = v
		}
	}
	dir, err := os.MkdirTemp("", "imgbuild-git-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	git := func(args ...string) error {
		c := exec.CommandContext(ctx, "git", args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		if opts["insecure-skip-tls"] == "true" {
			c.Env = append(c.Env, "GIT_SSL_NO_VERIFY=true")
		}
		if out, err := c.CombinedOutput(); err != nil {
			// git echoes the URL; keep credentials out of the error.
			return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(redactURL(string(out))))
		}
		return nil
	}
	branch := opts["branch"]
	if strings.HasPrefix(ref, "refs/heads/") {
		branch = strings.TrimPrefix(ref, "refs/heads/")
	}
	args := []string{"clone", "--quiet"}
	if branch != "" {
		args = append(args, "--branch", branch)
	}
	if opts["single-branch"] == "true" {
		args = append(args, "--single-branch")
	}
	if opts["recurse-submodules"] == "true" {
		args = append(args, "--recurse-submodules")
	}
	if err := git(append(args, u.String(), ".")...); err != nil {
		cleanup()
		return "", func() {}, err
	}
	if ref != "" && branch == "" {
		if err := git("fetch", "--quiet", "origin", ref); err != nil {
			cleanup()
			return "", func() {}, err
		}
		if commit == "" {
			commit = "FETCH_HEAD"
		}
	}
	if commit != "" {
		if err := git("checkout", "--quiet", commit); err != nil {
			cleanup()
			return "", func() {}, err
		}
	}
	return dir, cleanup, nil
}

// redactURL hides the password part of any URL in s.
func redactURL(s string) string {
	fields := strings.Fields(s)
	for _, f := range fields {
		if u, err := url.Parse(f); err == nil && u.User != nil {
			s = strings.ReplaceAll(s, f, u.Redacted())
		}
	}
	return s
}
