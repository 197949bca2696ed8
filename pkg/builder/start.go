//go:build linux

package builder

import (
	"context"

	"github.com/imgbuild/imgbuild/pkg/builder/internal/embedded"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// startEmbedded prepares the state dir (its worker record, crash recovery,
// the process's temp dir) and starts the embedded controller on it, with
// the options resolved into an [embedded.Config]. It returns the record of
// where pulled blobs come from, which the registry hosts write to.
func startEmbedded(ctx context.Context, o *options) (*embedded.Controller, *blobSources, error) {
	snName, err := embedded.ResolveSnapshotter(o.root, o.snapshotter)
	if err != nil {
		return nil, nil, err
	}
	// Before anything opens a database: another snapshotter's view of the
	// state dir would drop its records.
	explicit := o.snapshotter != "" && o.snapshotter != "auto"
	if err := checkWorkerRecord(o.root, snName, explicit, sandbox.InUserNamespace()); err != nil {
		return nil, nil, err
	}
	if err := recoverState(ctx, o); err != nil {
		return nil, nil, err
	}
	if err := useTempDir(o.dir); err != nil {
		return nil, nil, err
	}
	sources := newBlobSources(o.root)
	l := o.limits.resolved()
	bk, err := embedded.Start(ctx, embedded.Config{
		Dir:                    o.dir,
		Runc:                   o.runc,
		Snapshotter:            snName,
		Rootless:               sandbox.InUserNamespace(),
		RegistryHosts:          registryHosts(o, sources),
		GCPolicy:               gcPolicy(o.dir, o.gc),
		Limits:                 embedded.Limits{LayerSize: l.LayerSize, ImageSize: l.ImageSize},
		AllowExternalFrontends: o.allowExternalFrontends,
	})
	if err != nil {
		return nil, nil, err
	}
	return bk, sources, nil
}
