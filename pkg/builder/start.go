//go:build linux

package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/imgbuild/imgbuild/pkg/builder/internal/embedded"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// startEmbedded prepares the state dir (its worker record, crash recovery,
// the process's temp dir) and starts the embedded controller on it, with
// the options resolved into an [embedded.Config]. It returns the record of
// where pulled blobs come from, which the registry hosts write to.
func startEmbedded(ctx context.Context, o *options) (*embedded.Controller, *blobSources, error) {
	snapshotter := o.snapshotter
	if o.executor == sandbox.InPlace {
		if snapshotter != "" && snapshotter != "auto" && snapshotter != "native" {
			return nil, nil, fmt.Errorf("--snapshotter %s: the in-place executor works only with the native snapshotter", snapshotter)
		}
		snapshotter = "native"
	}
	snName, err := embedded.ResolveSnapshotter(o.root, snapshotter)
	if err != nil {
		return nil, nil, err
	}
	// Before anything opens a database: another snapshotter's view of the
	// state dir would drop its records.
	explicit := snapshotter != "" && snapshotter != "auto"
	if err := checkWorkerRecord(o.root, snName, explicit, sandbox.InUserNamespace()); err != nil {
		return nil, nil, err
	}
	if err := recoverState(ctx, o); err != nil {
		return nil, nil, err
	}
	if err := useTempDir(o.dir); err != nil {
		return nil, nil, err
	}
	// After the temp dir moves into the state dir (the release image has
	// no /tmp for the patch probe) and after recovery has emptied it.
	var inplace *inPlaceSetup
	if o.executor == sandbox.InPlace {
		var err error
		if inplace, err = setupInPlace(o); err != nil {
			return nil, nil, err
		}
	}
	sources := newBlobSources(o.root)
	l := o.limits.resolved()
	cfg := embedded.Config{
		Dir:                    o.dir,
		Runc:                   o.runc,
		Snapshotter:            snName,
		Rootless:               sandbox.InUserNamespace(),
		RegistryHosts:          registryHosts(o, sources),
		GCPolicy:               gcPolicy(o.dir, o.gc),
		Limits:                 embedded.Limits{LayerSize: l.LayerSize, ImageSize: l.ImageSize},
		AllowExternalFrontends: o.allowExternalFrontends,
		Executor:               string(o.executor),
	}
	if inplace != nil {
		cfg.Protect, cfg.SecretsDir = inplace.protect, inplace.secretsDir
	}
	bk, err := embedded.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return bk, sources, nil
}

// inPlaceSetup is what the in-place executor is started with.
type inPlaceSetup struct {
	protect    []string
	secretsDir string
}

// setupInPlace readies the process for the in-place executor: BuildKit
// built with imgbuild's patch and told not to mount, secrets in an existing
// tmpfs, and the paths of / it must leave alone.
func setupInPlace(o *options) (*inPlaceSetup, error) {
	if err := os.Setenv("IMGBUILD_NO_MOUNTS", "1"); err != nil {
		return nil, err
	}
	if err := embedded.NoMountsPatched(); err != nil {
		return nil, fmt.Errorf("the in-place executor needs imgbuild built with its BuildKit patch (third_party/buildkit; make build does it): %w", err)
	}
	s := &inPlaceSetup{secretsDir: o.dir.Temp()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && unix.Access("/dev/shm", unix.W_OK) == nil {
		s.secretsDir = "/dev/shm"
	}
	if err := os.MkdirAll(s.secretsDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Setenv("IMGBUILD_SECRETS_DIR", s.secretsDir); err != nil {
		return nil, err
	}
	var err error
	if s.protect, err = inPlaceProtect(o, os.Getenv); err != nil {
		return nil, err
	}
	return s, nil
}

// inPlaceProtect is what the in-place executor must leave alone in /
// besides what it finds itself (inplace.Protected): the state dir, /kaniko,
// imgbuild and its runc, the docker config, and the caller's paths
// ([WithProtectedPaths], kaniko's --ignore-path).
func inPlaceProtect(o *options, getenv func(string) string) ([]string, error) {
	protect := []string{o.root, "kaniko"}
	if exe, err := os.Executable(); err == nil {
		protect = append(protect, exe)
	}
	if d := getenv("DOCKER_CONFIG"); d != "" {
		protect = append(protect, d)
	}
	if o.runc != "" {
		protect = append(protect, o.runc)
	}
	for _, p := range protect {
		if filepath.Clean(p) == "/" {
			return nil, errors.New("the in-place executor cannot keep / for itself: use a state dir and files below it")
		}
	}
	return append(protect, o.protect...), nil
}
