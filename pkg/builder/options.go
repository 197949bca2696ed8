package builder

import (
	"fmt"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/sirupsen/logrus"

	"github.com/imgbuild/imgbuild/pkg/registry"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// Option configures a [Builder]; it returns an error so that a bad value fails
// at construction.
type Option func(*options) error

type options struct {
	dir                    statedir.Dir
	root                   string // dir's path
	runc                   string
	allowInsecureRunc      bool
	snapshotter            string
	insecure               []string
	hosts                  map[string]registry.HostConfig
	keychain               authn.Keychain
	allowExternalFrontends bool
	waitForLock            bool
	log                    logrus.FieldLogger
	gc                     statedir.GCConfig
	cacheMounts            CacheMounts
	limits                 Limits
	executor               sandbox.Executor
	pullRetries            *int     // nil: pullAttempts-1
	protect                []string // more paths the in-place executor leaves alone
}

// WithExecutor sets how RUN steps run, as chosen by
// [sandbox.ChooseExecutor]: sandbox.Runc (the default), sandbox.RuncNoSandbox
// or sandbox.InPlace, which needs no runc, uses the native snapshotter and
// refuses another.
func WithExecutor(e sandbox.Executor) Option {
	return func(o *options) error { o.executor = e; return nil }
}

// WithPullRetries sets how many times a registry request of a pull (base
// images, cache imports) that failed with 408, 429, a 5xx or a connection
// reset is retried, with backoff from 1 s doubling, or as long as
// Retry-After asks (capped). 0 turns the retries off. The default is 3.
func WithPullRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("pull retries %d: want 0 or more", n)
		}
		o.pullRetries = &n
		return nil
	}
}

// WithProtectedPaths names more paths of / that the in-place executor
// (sandbox.InPlace) leaves alone when it rewrites / for a RUN step, as
// kaniko's --ignore-path; they are not in the image either. Other executors
// never touch / and ignore them. "/" is refused. The default is none
// beyond the executor's own (see start.go).
func WithProtectedPaths(paths ...string) Option {
	return func(o *options) error {
		for _, p := range paths {
			if p == "" || filepath.Clean("/"+p) == "/" {
				return fmt.Errorf("protected path %q: want a path below /", p)
			}
		}
		o.protect = append(o.protect, paths...)
		return nil
	}
}

// WithRunc sets the runc binary. The default is the runc next to the running
// executable, else the one on $PATH (see [sandbox.FindRunc]).
func WithRunc(path string) Option {
	return func(o *options) error { o.runc = path; return nil }
}

// WithAllowInsecureRunc lets a runc without the 2024/2025 escape fixes run
// RUN steps, with a warning. The default is to refuse it.
func WithAllowInsecureRunc(allow bool) Option {
	return func(o *options) error { o.allowInsecureRunc = allow; return nil }
}

// WithSnapshotter picks the snapshotter: "auto", "overlayfs", "fuse-overlayfs"
// or "native". The default is "auto": overlayfs where the state dir supports
// it, else fuse-overlayfs, else native. [New] refuses a state dir whose build
// cache another snapshotter made (see [StateMismatchError]).
func WithSnapshotter(name string) Option {
	return func(o *options) error { o.snapshotter = name; return nil }
}

// WithInsecureRegistries names registries (host or host:port) to reach over
// plain HTTP or unverified TLS. Loopback registries are plain HTTP anyway.
// The default is none.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) error { o.insecure = append(o.insecure, hosts...); return nil }
}

// WithKeychain sets the credentials used to pull base images and caches. The
// default is authn.DefaultKeychain (docker config.json and helpers).
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) error { o.keychain = kc; return nil }
}

// WithExternalFrontends allows `# syntax=` and BUILDKIT_SYNTAX to name a
// frontend image other than docker/dockerfile, which is then pulled and run.
// The default refuses them: the Dockerfile frontend is compiled in.
func WithExternalFrontends(allow bool) Option {
	return func(o *options) error { o.allowExternalFrontends = allow; return nil }
}

// WithWaitForLock makes [New] wait while another process uses the state dir
// instead of failing at once. The default is to fail.
func WithWaitForLock(wait bool) Option {
	return func(o *options) error { o.waitForLock = wait; return nil }
}

// WithLogger sets where the builder logs. The default is logrus's standard
// logger.
func WithLogger(l logrus.FieldLogger) Option {
	return func(o *options) error { o.log = l; return nil }
}
