//go:build linux

package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildctl/build"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/util/apicaps"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/sirupsen/logrus"
	"github.com/tonistiigi/fsutil"
	fscopy "github.com/tonistiigi/fsutil/copy"

	"github.com/imgbuild/imgbuild/pkg/builder/internal/embedded"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// Builder builds Dockerfiles on an embedded BuildKit. It holds the state
// dir's lock from [New] until [Builder.Close].
type Builder struct {
	opts options
	lock *statedir.Lock
	// bk is the embedded controller, nil when joined.
	bk *embedded.Controller
	// client is bk's client, or the one connected to the process that owns
	// the state dir when joined.
	client *client.Client
	// snapshotter is the resolved snapshotter's name.
	snapshotter string
	// sources records where pulled blobs came from (nil when joined).
	sources *blobSources
	// shared serves bk to other processes on the state dir (nil if not).
	shared *sharedServer
	// joined is set when client is another process's controller.
	joined  bool
	images  string // content store the OCI exporter writes images into
	runcVer string
}

// New opens the state dir (taking its lock), checks runc and starts the
// embedded BuildKit controller. It returns a [*StateMismatchError] when this
// process would see the state dir's build cache differently from the
// processes that made it (another snapshotter, or the other side of a user
// namespace).
func New(ctx context.Context, dir statedir.Dir, opts ...Option) (*Builder, error) {
	root := dir.Path()
	o := options{dir: dir, root: root, log: logrus.StandardLogger()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.keychain == nil {
		o.keychain = authn.DefaultKeychain
	}
	if root == "" {
		return nil, errors.New("no state dir given")
	}
	if o.executor == sandbox.InPlace {
		// RUN steps run without runc.
		b := &Builder{opts: o, images: dir.Images(), runcVer: "none (in-place executor)"}
		if err := b.open(ctx); err != nil {
			return nil, err
		}
		return b, nil
	}
	runcPath, err := sandbox.FindRunc(o.runc)
	if err != nil {
		return nil, err
	}
	ver, warning, err := sandbox.CheckRuncCached(ctx, root, runcPath, o.allowInsecureRunc)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		o.log.Warn(warning)
	}
	o.runc = runcPath
	if sandbox.InUserNamespace() && sandbox.SingleGIDMapped() {
		if o.runc, err = sandbox.RuncShim(root, runcPath); err != nil {
			return nil, fmt.Errorf("setting up runc for a single-ID user namespace: %w", err)
		}
	}

	b := &Builder{opts: o, images: dir.Images(), runcVer: ver}
	if err := b.open(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// processDefaults applies the process-wide settings buildkitd applies at
// start: files created by RUN and COPY get exactly the modes the build asks
// for, whatever the caller's umask.
func processDefaults() {
	syscall.Umask(0)
	fscopy.UmaskIsZero = true
	apicaps.ExportedProduct = "imgbuild"
}

// Close saves cache mounts (see [WithCacheMounts]), collects garbage as the
// GC policy says (see [WithGC]), stops the embedded controller and releases
// the state dir.
//
// A process that joined another's state dir only disconnects. The owner first
// waits until no joined build is connected.
func (b *Builder) Close() error {
	if b.joined {
		return b.client.Close()
	}
	if b.shared != nil {
		b.shared.drain()
	}
	cerr := b.closing()
	err := b.bk.Close()
	if err == nil {
		// Lets the next owner skip the database check (see recoverState).
		if merr := b.opts.dir.MarkClean(); merr != nil {
			b.opts.log.WithError(merr).Debug("marking the state dir closed cleanly")
		}
	}
	if b.shared != nil {
		// Removed before unlocking, so a socket is never left behind.
		err = errors.Join(err, b.shared.close())
	}
	if rerr := b.lock.Release(); err == nil {
		err = rerr
	}
	return errors.Join(cerr, err)
}

// Snapshotter reports the snapshotter in use: "overlayfs", "fuse-overlayfs"
// or "native".
func (b *Builder) Snapshotter() string { return b.snapshotter }

// Request is one build.
type Request struct {
	// ContextDir is the build context directory. Required.
	ContextDir string
	// DockerfilePath is the Dockerfile. The default is ContextDir/Dockerfile.
	DockerfilePath string
	// Dockerfile, when non-nil, is the Dockerfile's content (read from
	// stdin); DockerfilePath then only names it in messages.
	Dockerfile []byte
	// Target is the stage to build. The default is the last stage.
	Target string
	// BuildArgs are the values of ARGs. The default is none.
	BuildArgs map[string]string
	// Labels are added to the image config. The default is none.
	Labels map[string]string
	// Secrets are --secret values as docker accepts them:
	// id=ID[,src=PATH|env=VAR]. The default is none.
	Secrets []string
	// NoCache disables the build cache for every step.
	NoCache bool
	// Platform is the one target platform, e.g. linux/amd64. The default is
	// the host's.
	Platform string
	// Progress is the display mode: auto, tty, plain, rawjson or quiet. The
	// default is auto.
	Progress string
	// ProgressOut receives the progress display. The default is os.Stderr.
	ProgressOut io.Writer
	// CacheImports are BuildKit cache sources (--cache-from). The default
	// is none: only the state dir's own cache.
	CacheImports []CacheEntry
	// CacheExports are BuildKit cache destinations (--cache-to). The
	// default is none.
	CacheExports []CacheEntry
	// Compression is how layers are compressed. The default is gzip at
	// its default level, with base image layers reused as they are.
	Compression Compression
	// Exports are outputs BuildKit's own exporters write during the solve,
	// as buildx's --output does. The default is none: the image is only
	// put into the state dir's content store, for [Result.Image].
	Exports []Export
}

// Export types [Export.Type] takes, with BuildKit's (and buildx's)
// meanings.
const (
	ExportLocal  = client.ExporterLocal  // the root filesystem into Export.Dir
	ExportTar    = client.ExporterTar    // the root filesystem as a tarball
	ExportOCI    = client.ExporterOCI    // the image as an OCI layout tarball
	ExportDocker = client.ExporterDocker // the image as a docker-archive tarball (docker load)
)

// Export is one output written by BuildKit's exporter of its Type.
type Export struct {
	// Type is [ExportLocal], [ExportTar], [ExportOCI] or [ExportDocker].
	Type string
	// Names name the image inside [ExportOCI] and [ExportDocker]
	// tarballs. The default is none.
	Names []string
	// Dir is where [ExportLocal] writes.
	Dir string
	// File is where the tarball types write. The exporter closes it.
	File io.WriteCloser
}

// entry maps e onto BuildKit's client. The image types get the same
// settings as the image export, so their layers are the same blobs.
func (e Export) entry(req Request) (client.ExportEntry, error) {
	ee := client.ExportEntry{Type: e.Type, Attrs: map[string]string{}}
	switch e.Type {
	case ExportLocal:
		if e.Dir == "" {
			return ee, errors.New("local export: no directory")
		}
		ee.OutputDir = e.Dir
		return ee, nil
	case ExportTar:
	case ExportOCI, ExportDocker:
		ee.Attrs = exportAttrs(req)
		delete(ee.Attrs, "tar")
		if e.Type == ExportDocker && req.Compression.Type != Zstd && req.Compression.Type != Estargz {
			// BuildKit's docker exporter picks the media types, as for
			// buildx's docker output; zstd and estargz need OCI ones.
			delete(ee.Attrs, string(exptypes.OptKeyOCITypes))
		}
		if len(e.Names) > 0 {
			ee.Attrs[string(exptypes.OptKeyName)] = strings.Join(e.Names, ",")
		}
	default:
		return ee, fmt.Errorf("unknown export type %q", e.Type)
	}
	if e.File == nil {
		return ee, fmt.Errorf("%s export: no file", e.Type)
	}
	f := e.File
	ee.Output = func(map[string]string) (io.WriteCloser, error) { return f, nil }
	return ee, nil
}

// CacheEntry is one cache import or export, in BuildKit's terms: Type is
// registry, inline or local; Attrs are its CSV attributes (ref, mode, dest,
// src, ...).
type CacheEntry struct {
	Type  string
	Attrs map[string]string
}

func cacheEntries(in []CacheEntry) []client.CacheOptionsEntry {
	out := make([]client.CacheOptionsEntry, 0, len(in))
	for _, e := range in {
		out = append(out, client.CacheOptionsEntry{Type: e.Type, Attrs: e.Attrs})
	}
	return out
}

// Result is a built image.
type Result struct {
	// Image is the built image, read from the state dir's content store.
	Image v1.Image
	// Digest is the image manifest's digest.
	Digest v1.Hash
	// ConfigDigest is the image config's digest.
	ConfigDigest v1.Hash
	// Warnings are the build's lint warnings.
	Warnings []string
	// BlobSources names, for those of the image's layers that were pulled
	// from a registry (base image layers), the repositories ("host/repo",
	// newest first) that served them, as recorded in the state dir's
	// [BlobSourcesFile]. A push can mount them from there instead of
	// uploading them (see registry.Options.BlobSources). Layers with no
	// record are left out.
	BlobSources map[v1.Hash][]string
}

// Build solves req and returns the image.
func (b *Builder) Build(ctx context.Context, req Request) (*Result, error) {
	if err := req.Compression.Validate(); err != nil {
		return nil, err
	}
	bctx, err := newBuildContext(req.ContextDir)
	if err != nil {
		return nil, err
	}
	dfName := req.DockerfilePath
	if dfName == "" {
		dfName = filepath.Join(req.ContextDir, "Dockerfile")
	}
	dfData, dfOnDisk := req.Dockerfile, ""
	if dfData == nil {
		if dfData, err = bctx.readDockerfile(dfName); err != nil {
			return nil, err
		}
		dfOnDisk = dfName
	}
	if err := bctx.readIgnore(dfOnDisk); err != nil {
		return nil, err
	}
	dfDir, dfBase := filepath.Dir(dfName), filepath.Base(dfName)
	if req.Dockerfile != nil || bctx.linked {
		// The frontend reads the Dockerfile and <Dockerfile>.dockerignore
		// from a directory, where it cannot follow these links (see
		// buildContext): stage what was read above in the state dir, under
		// the Dockerfile's own name, and remove it afterwards.
		tmp, err := os.MkdirTemp(b.opts.root, "dockerfile-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if req.Dockerfile != nil {
			dfBase = "Dockerfile"
		}
		dfDir = tmp
		if err := os.WriteFile(filepath.Join(dfDir, dfBase), dfData, 0o644); err != nil {
			return nil, err
		}
		if bctx.ignore != nil {
			if err := os.WriteFile(filepath.Join(dfDir, dfBase+".dockerignore"), bctx.ignore, 0o644); err != nil {
				return nil, err
			}
		}
	}

	attrs := map[string]string{"filename": dfBase}
	if err := b.checkFrontend(dfName, dfData, req.BuildArgs, attrs); err != nil {
		return nil, err
	}
	if _, builtin := attrs["cmdline"]; builtin {
		warnOptionalDevices(b.opts.log, dfName, dfData)
	}
	if req.Target != "" {
		attrs["target"] = req.Target
	}
	if req.Platform != "" {
		if err := checkEmulation(dfName, dfData, req.Platform, req.Target); err != nil {
			return nil, err
		}
		attrs["platform"] = req.Platform
	}
	if req.NoCache {
		attrs["no-cache"] = ""
	}
	for k, v := range req.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	for k, v := range req.Labels {
		attrs["label:"+k] = v
	}

	ctxFS, err := fsutil.NewFS(req.ContextDir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	ctxFS = bctx.skipSockets(ctxFS, b.opts.log)
	dfFS, err := fsutil.NewFS(dfDir)
	if err != nil {
		return nil, fmt.Errorf("Dockerfile directory: %w", err) //nolint:staticcheck // Dockerfile is a name
	}
	ls, err := local.NewStore(b.images)
	if err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	store := &linkingStore{Store: ls, from: b.opts.dir.Worker(b.snapshotter).Content(), to: b.images}

	attachables := []session.Attachable{authProvider(b.opts.keychain)}
	if len(req.Secrets) > 0 {
		sp, err := parseSecrets(req.Secrets)
		if err != nil {
			return nil, err
		}
		attachables = append(attachables, sp)
	}

	var exports []client.ExportEntry
	for _, e := range req.Exports {
		ee, err := e.entry(req)
		if err != nil {
			return nil, err
		}
		exports = append(exports, ee)
	}
	// Last: BuildKit merges the exporters' responses in order, and the
	// image digest read below must be this export's (a docker tarball's
	// manifest has other media types, so another digest).
	exports = append(exports, client.ExportEntry{
		Type:        client.ExporterOCI,
		Attrs:       exportAttrs(req),
		OutputStore: processStore{store},
	})
	solveOpt := client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports:       exports,
		Session:       attachables,
		CacheImports:  cacheEntries(req.CacheImports),
		CacheExports:  cacheEntries(req.CacheExports),
	}

	mode := req.Progress
	if mode == "" {
		mode = "auto"
	}
	out := req.ProgressOut
	if out == nil {
		out = os.Stderr
	}
	var (
		resp     *client.SolveResponse
		warnings []client.VertexWarning
		solveErr error
	)
	for attempt := 0; ; attempt++ {
		display, err := progressui.NewDisplay(out, progressui.DisplayMode(mode))
		if err != nil {
			return nil, fmt.Errorf("progress mode %q: %w", mode, err)
		}
		ch := make(chan *client.SolveStatus)
		displayDone := make(chan []client.VertexWarning, 1)
		go func() {
			// The display must drain ch until Solve closes it, even after ctx
			// is cancelled, or Solve blocks.
			w, _ := display.UpdateFrom(context.WithoutCancel(ctx), ch)
			displayDone <- w
		}()
		resp, solveErr = b.client.Solve(ctx, nil, solveOpt, ch)
		warnings = <-displayDone
		if solveErr == nil || attempt >= maxRejoins || !b.ownerLost(ctx, solveErr) {
			break
		}
		// The process serving this state dir died (see shared.go): take
		// its place or join the next one, and build again from the cache.
		if err := b.rejoin(ctx); err != nil {
			return nil, err
		}
	}
	if solveErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("build canceled: %w", context.Cause(ctx))
		}
		b.collectAfterDiskFull(ctx, solveErr)
		return nil, buildError(solveErr, dfName)
	}

	dgst, err := v1.NewHash(resp.ExporterResponse[exptypes.ExporterImageDigestKey])
	if err != nil {
		return nil, fmt.Errorf("reading image digest from BuildKit: %w", err)
	}
	img, err := openImage(b.images, dgst)
	if err != nil {
		return nil, err
	}
	if err := b.opts.dir.RecordResult(dgst, b.opts.gc.KeepResults); err != nil {
		return nil, err
	}
	res := &Result{Image: img, Digest: dgst}
	if cd, ok := resp.ExporterResponse[exptypes.ExporterImageConfigDigestKey]; ok {
		res.ConfigDigest, _ = v1.NewHash(cd)
	}
	for _, w := range warnings {
		res.Warnings = append(res.Warnings, string(w.Short))
	}
	res.BlobSources = b.blobSources(img)
	return res, nil
}

// blobSources looks up where img's layers were pulled from: in the owner's
// records, or, in a process that joined the owner, in the file the owner
// keeps them in. Nothing is an error: the sources only save uploads.
func (b *Builder) blobSources(img v1.Image) map[v1.Hash][]string {
	layers, err := img.Layers()
	if err != nil {
		return nil
	}
	var digests []v1.Hash
	for _, l := range layers {
		if d, err := l.Digest(); err == nil {
			digests = append(digests, d)
		}
	}
	if b.sources != nil {
		return b.sources.lookup(digests)
	}
	return lookupBlobSources(b.opts.root, digests)
}

// checkFrontend enforces the frontend policy: `# syntax=docker/dockerfile:…`
// runs on the built-in Dockerfile frontend; any other frontend image is
// refused unless external frontends are allowed.
func (b *Builder) checkFrontend(dfName string, df []byte, args map[string]string, attrs map[string]string) error {
	ref, line := "", 0
	if v, ok := args["BUILDKIT_SYNTAX"]; ok {
		ref = strings.Fields(v + " ")[0]
	} else if r, _, loc, ok := detectSyntax(df); ok {
		ref = r
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
	}
	if ref == "" {
		// "cmdline" tells the Dockerfile frontend not to look for a
		// syntax directive itself.
		attrs["cmdline"] = ""
		return nil
	}
	if isBuiltinFrontend(ref) {
		b.opts.log.Debugf("%s: using the built-in Dockerfile frontend for syntax %s", dfName, ref)
		attrs["cmdline"] = ""
		return nil
	}
	if b.opts.allowExternalFrontends {
		return nil
	}
	where := "BUILDKIT_SYNTAX build arg"
	if line > 0 {
		where = fmt.Sprintf("%s:%d", dfName, line)
	}
	return &ExternalFrontendError{Where: where, Ref: ref}
}

// exportAttrs are the OCI exporter's settings. With SOURCE_DATE_EPOCH set,
// layer file times are rewritten to it too (not only the config's), so
// that the same sources give the same digest. req.Compression sets the
// layer compression.
func exportAttrs(req Request) map[string]string {
	attrs := map[string]string{"tar": "false", "oci-mediatypes": "true"}
	if _, ok := req.BuildArgs["SOURCE_DATE_EPOCH"]; ok {
		attrs["rewrite-timestamp"] = "true"
	}
	req.Compression.attrs(attrs)
	return attrs
}

// parseSecrets parses the secret specs ("id=ID,src=PATH", "id=ID,env=VAR"). Each is checked on its own first so
// that an error names the value at fault (the values hold ids and paths,
// never the secrets themselves).
func parseSecrets(values []string) (session.Attachable, error) {
	for _, v := range values {
		if _, err := build.ParseSecret([]string{v}); err != nil {
			return nil, fmt.Errorf("secret %q: %w", v, err)
		}
	}
	sp, err := build.ParseSecret(values)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return sp, nil
}
