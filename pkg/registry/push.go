package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/imgbuild/imgbuild/internal/retry"
)

// defaultJobs matches ggcr's default upload concurrency.
const defaultJobs = 4

// Options configure registry access. The zero value uses the default
// keychain and TLS everywhere except loopback and private-network registries,
// which ggcr (like docker) reaches over plain HTTP.
type Options struct {
	// Insecure lists registry hosts (host or host:port) reached over plain
	// HTTP or over TLS without certificate verification, like docker's
	// --insecure-registry. The default is none.
	Insecure []string
	// Keychain resolves credentials. The default is [authn.DefaultKeychain]
	// (docker config.json, $DOCKER_CONFIG, credential helpers).
	Keychain authn.Keychain
	// Transport carries the requests. The default is [remote.DefaultTransport].
	Transport http.RoundTripper
	// Jobs is the number of concurrent blob uploads. The default is 4.
	Jobs int
	// Progress, if non-nil, receives one human-readable line per finished
	// blob and per pushed reference. The default is no progress output.
	Progress io.Writer
	// Hosts holds per-registry TLS settings (custom CAs, client
	// certificates, skipped verification), keyed by host or host:port; a
	// key without a port matches any port. The default is none.
	Hosts map[string]HostConfig
	// RetryBackoff paces the retries of a failed request or blob upload.
	// The default is ggcr's: 1 s, then 3 s, three attempts in all.
	RetryBackoff *remote.Backoff
	// MaxRetryAfter caps the wait a registry's Retry-After can ask for.
	// The default is [DefaultMaxRetryAfter].
	MaxRetryAfter time.Duration
	// BlobSources names repositories ("host/repository", preferred first)
	// known to hold blobs, by digest: where a base image's layers were
	// pulled from (builder.Result.BlobSources). A blob that must go to a
	// repository of the same registry is then mounted from the first such
	// repository (a cross-repository blob mount) instead of uploaded; a
	// registry that declines the mount gets the upload. The default is
	// none: only blobs pushed to another repository of the same registry
	// by the same call are mounted.
	BlobSources map[v1.Hash][]string
	// OnImmutableTag, if set, makes a tag the registry refuses because
	// the tag is immutable (see [IsImmutableTag]) no failure: it is called
	// with the tag and the registry's answer, and the push goes on as if
	// the tag had been pushed, as kaniko's --push-ignore-immutable-tag-errors
	// does. The default is nil: the refusal fails the push.
	OnImmutableTag func(ref name.Reference, err error)
}

// Pusher pushes images and indexes to registries. It holds one
// [remote.Pusher] and one [remote.Puller], so registry pings and auth tokens
// are reused across calls and references. It is safe for concurrent use.
type Pusher struct {
	pusher   *remote.Pusher
	puller   *remote.Puller // for the HEADs: what is there, reading tags back
	insecure []string
	jobs     int
	progress *progressTracker // nil without Options.Progress
	sources  map[v1.Hash][]name.Repository
	// For CheckPush, which speaks to the registry below ggcr's remote.
	keychain  authn.Keychain
	transport http.RoundTripper
	immutable func(name.Reference, error)
}

// NewPusher returns a Pusher configured by opts.
func NewPusher(opts Options) (*Pusher, error) {
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = defaultJobs
	}
	rt := opts.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	rt, err := hostTransports(rt, opts.Insecure, opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("creating pusher: %w", err)
	}
	p := &Pusher{insecure: opts.Insecure, jobs: jobs, sources: parseSources(opts.BlobSources), keychain: kc, immutable: opts.OnImmutableTag}
	if opts.Progress != nil {
		p.progress = newProgressTracker(opts.Progress, rt)
		rt = p.progress
	}
	rt = newGuard(rt, opts.MaxRetryAfter)
	p.transport = rt
	backoff := remote.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 3}
	if opts.RetryBackoff != nil {
		backoff = *opts.RetryBackoff
	}
	ropts := []remote.Option{
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(rt),
		remote.WithUserAgent("imgbuild"),
		remote.WithRetryBackoff(backoff),
		remote.WithRetryStatusCodes(retry.StatusCodes...),
		remote.WithRetryPredicate(retryable),
	}
	if p.pusher, err = remote.NewPusher(append([]remote.Option{remote.WithJobs(jobs)}, ropts...)...); err != nil {
		return nil, fmt.Errorf("creating pusher: %w", err)
	}
	if p.puller, err = remote.NewPuller(ropts...); err != nil {
		return nil, fmt.Errorf("creating pusher: %w", err)
	}
	return p, nil
}

// Push pushes img under every ref; refs may span registries and
// repositories. Per repository it first asks the registry what the tags
// serve: a repository where every ref serves the manifest already costs no
// upload. Otherwise it uploads the blobs the repository lacks, puts the
// manifest under each tag that does not serve it (by digest if there is no
// tag) and reads the tags back. It returns the manifest digest.
func (p *Pusher) Push(ctx context.Context, img v1.Image, refs []name.Reference) (v1.Hash, error) {
	return p.push(ctx, img, refs, false)
}

// PushIndex is [Pusher.Push] for an image index: child manifests and their
// blobs are pushed to each repository before the index itself.
func (p *Pusher) PushIndex(ctx context.Context, idx v1.ImageIndex, refs []name.Reference) (v1.Hash, error) {
	return p.push(ctx, idx, refs, false)
}

// pushShared is [Pusher.Push] for refs other writers may be pushing at the
// same time: reading a tag back accepts another writer's manifest.
func (p *Pusher) pushShared(ctx context.Context, img v1.Image, refs []name.Reference) (v1.Hash, error) {
	return p.push(ctx, img, refs, true)
}

// manifest is what Push and PushIndex have in common.
type manifest interface {
	remote.Taggable
	partial.Describable
}

func (p *Pusher) push(ctx context.Context, m manifest, refs []name.Reference, shared bool) (v1.Hash, error) {
	if len(refs) == 0 {
		return v1.Hash{}, errors.New("pushing: no references given")
	}
	digest, err := m.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("computing manifest digest: %w", err)
	}
	// Blobs and children are collected once and shared by every repository.
	blobs, children, err := dependencies(m, nil)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading image %s: %w", digest, err)
	}

	for _, ref := range refs {
		if d, ok := ref.(name.Digest); ok && d.DigestStr() != digest.String() {
			return v1.Hash{}, fmt.Errorf("pushing to %s: the manifest's digest is %s", ref, digest)
		}
	}
	groups, err := p.groupByRepo(refs)
	if err != nil {
		return v1.Hash{}, err
	}
	// The first repository pushed in a registry becomes the mount source for
	// the others, so each blob crosses the network once per registry.
	mountFrom := map[string]name.Repository{}
	for _, g := range groups {
		reg := g.repo.RegistryStr()
		from, ok := mountFrom[reg]
		if !ok {
			mountFrom[reg] = g.repo
		}
		if err := p.pushRepo(ctx, g, m, digest, blobs, children, from, ok, shared); err != nil {
			return v1.Hash{}, err
		}
	}
	return digest, nil
}

type repoRefs struct {
	repo name.Repository
	refs []name.Reference
}

// groupByRepo groups refs by repository, keeping first-seen order.
func (p *Pusher) groupByRepo(refs []name.Reference) ([]*repoRefs, error) {
	var groups []*repoRefs
	byRepo := map[string]*repoRefs{}
	for _, ref := range refs {
		ref, err := withInsecure(ref, p.insecure)
		if err != nil {
			return nil, err
		}
		key := ref.Context().String()
		g, ok := byRepo[key]
		if !ok {
			g = &repoRefs{repo: ref.Context()}
			byRepo[key] = g
			groups = append(groups, g)
		}
		g.refs = append(g.refs, ref)
	}
	return groups, nil
}

func (p *Pusher) pushRepo(ctx context.Context, g *repoRefs, m manifest, digest v1.Hash, blobs []v1.Layer, children []manifest, from name.Repository, mount, shared bool) error {
	repo := g.repo
	label := g.refs[0].String()

	// Ask the tags first, in order, until one serves something else; the
	// tags after a miss most likely move with it and are put unasked. A tag
	// that serves the digest needs no PUT, and its HEAD is its read-back.
	served := make([]bool, len(g.refs))
	tags := false
	for i, ref := range g.refs {
		if _, ok := ref.(name.Tag); !ok {
			continue
		}
		tags = true
		if !p.serves(ctx, ref, digest) {
			break
		}
		served[i] = true
	}
	// A registry accepts a manifest only once it has its blobs, so a
	// repository that already holds this manifest (which a tag serving it
	// proves) holds everything it needs: pushing an unchanged image again
	// is then one request, not one per blob.
	present := slices.Contains(served, true) || p.serves(ctx, repo.Digest(digest.String()), digest)
	for i, ref := range g.refs {
		if _, ok := ref.(name.Digest); ok {
			served[i] = present
		}
	}
	// When every ref is served already, the repository is up to date and
	// nothing below sends a request.

	if !present {
		// An index merged from images pushed by digest (imagetools
		// create) finds its children there already: those, and their
		// blobs, are not asked about one by one.
		if idx, ok := m.(v1.ImageIndex); ok {
			var err error
			if blobs, children, err = p.missingDeps(ctx, repo, idx, blobs, children); err != nil {
				return fmt.Errorf("reading image %s: %w", digest, err)
			}
		}
	}
	if p.progress != nil {
		done := p.progress.start(repo, label, blobs)
		defer done()
	}
	if !present {
		if err := p.uploadDeps(ctx, repo, digest, blobs, children, from, mount); err != nil {
			return err
		}
	}
	// kept are the immutable tags left as the registry has them.
	kept := make([]bool, len(g.refs))
	// With a tag, the first tag's PUT creates the manifest, as docker push
	// does; with digest references only, it is put by digest, once. Put, not
	// Push: Push would HEAD the reference and the blobs again.
	for i, ref := range g.refs {
		if served[i] {
			continue
		}
		if _, ok := ref.(name.Digest); ok && (tags || present) {
			continue
		}
		step := fmt.Sprintf("tagging %s", ref)
		if !present {
			step = fmt.Sprintf("pushing manifest %s to %s", digest, repo)
		}
		if err := p.pusher.Put(ctx, ref, m); err != nil {
			if p.immutable != nil && IsImmutableTag(err) {
				p.immutable(ref, err)
				kept[i] = true
				continue
			}
			return stepError(repo, step, err)
		}
		present = true
	}
	// Every tag was immutable: the digest references still get the
	// manifest, which no tag PUT left behind.
	for i, ref := range g.refs {
		if _, ok := ref.(name.Digest); !ok || served[i] || present {
			continue
		}
		if err := p.pusher.Put(ctx, ref, m); err != nil {
			return stepError(repo, fmt.Sprintf("pushing manifest %s to %s", digest, repo), err)
		}
		present = true
	}

	// Read every tag put back: what the registry serves is what users get,
	// and a concurrent push or a misbehaving proxy shows up here.
	for i, ref := range g.refs {
		if kept[i] {
			continue
		}
		if !served[i] {
			desc, err := p.puller.Head(ctx, ref)
			if err != nil {
				return stepError(repo, fmt.Sprintf("reading back %s", ref), err)
			}
			if desc.Digest != digest && shared {
				// Last writer wins: another build put its
				// manifest after this one.
				if p.progress != nil {
					p.progress.printf("%s now serves %s, pushed after this push's %s\n", ref, desc.Digest, digest)
				}
				continue
			}
			if desc.Digest != digest {
				return fmt.Errorf("reading back %s from %s: the registry serves %s, but imgbuild pushed %s", ref, repo.RegistryStr(), desc.Digest, digest)
			}
		}
		if p.progress == nil {
			continue
		}
		if _, ok := ref.(name.Digest); ok {
			p.progress.printf("pushed %s\n", ref)
		} else {
			p.progress.printf("pushed %s@%s\n", ref, digest)
		}
	}
	return nil
}

// uploadDeps pushes to repo the blobs and child manifests of the manifest
// with the given digest. A blob is mounted rather than uploaded when it is
// known to be in another repository of the same registry: from, if mount is
// set (the repository this push filled first), else the blob's first source
// in that registry (see [Options.BlobSources]).
func (p *Pusher) uploadDeps(ctx context.Context, repo name.Repository, digest v1.Hash, blobs []v1.Layer, children []manifest, from name.Repository, mount bool) error {
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(p.jobs)
	for _, l := range blobs {
		eg.Go(func() error {
			d, err := l.Digest()
			if err != nil {
				return fmt.Errorf("reading blob digest: %w", err)
			}
			if err := p.uploadBlob(ectx, repo, d, l, digest, from, mount); err != nil {
				return stepError(repo, fmt.Sprintf("pushing blob %s to %s", d, repo), err)
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}

	// Children go first: registries may refuse an index whose manifests
	// they do not have yet.
	for _, c := range children {
		d, err := c.Digest()
		if err != nil {
			return fmt.Errorf("computing manifest digest: %w", err)
		}
		if err := p.pusher.Push(ctx, repo.Digest(d.String()), c); err != nil {
			return stepError(repo, fmt.Sprintf("pushing manifest %s to %s", d, repo), err)
		}
	}
	return nil
}

// uploadBlob pushes the blob l (digest d) to repo, mounting it as
// uploadDeps says. ggcr asks for the mount with the source repository's pull
// scope added to the token, and uploads when the registry answers the mount
// with a plain upload session (202) or an error. A mount is only a saving,
// though: if asking for it is refused outright (401/403, e.g. by a token
// server that will not grant pull on the source), the blob is uploaded as
// if there were no source.
func (p *Pusher) uploadBlob(ctx context.Context, repo name.Repository, d v1.Hash, l v1.Layer, digest v1.Hash, from name.Repository, mount bool) error {
	var src name.Reference
	switch s, ok := p.mountSource(repo, d); {
	case mount:
		src = from.Digest(digest.String())
	case ok:
		src = s.Digest(d.String())
	default:
		return p.pusher.Upload(ctx, repo, l)
	}
	err := p.pusher.Upload(ctx, repo, &remote.MountableLayer{Layer: l, Reference: src})
	var terr *transport.Error
	if err != nil && ctx.Err() == nil && errors.As(err, &terr) &&
		(terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return p.pusher.Upload(ctx, repo, l)
	}
	return err
}

// mountSource returns the first recorded source of blob d in repo's
// registry, unless that is repo itself (where ggcr finds the blob anyway).
func (p *Pusher) mountSource(repo name.Repository, d v1.Hash) (name.Repository, bool) {
	for _, src := range p.sources[d] {
		if src.RegistryStr() != repo.RegistryStr() {
			continue
		}
		if src.RepositoryStr() == repo.RepositoryStr() {
			return name.Repository{}, false
		}
		return src, true
	}
	return name.Repository{}, false
}

// parseSources parses [Options.BlobSources], leaving out what does not
// name a repository: the sources are hints.
func parseSources(in map[v1.Hash][]string) map[v1.Hash][]name.Repository {
	out := map[v1.Hash][]name.Repository{}
	for d, srcs := range in {
		for _, s := range srcs {
			if r, err := name.NewRepository(s); err == nil {
				out[d] = append(out[d], r)
			}
		}
	}
	return out
}

// missingDeps returns the blobs and children of idx that repo may lack:
// all of them but those under a child manifest repo already serves.
func (p *Pusher) missingDeps(ctx context.Context, repo name.Repository, idx v1.ImageIndex, blobs []v1.Layer, children []manifest) ([]v1.Layer, []manifest, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	skip := map[v1.Hash]bool{}
	for _, d := range im.Manifests {
		if p.serves(ctx, repo.Digest(d.Digest.String()), d.Digest) {
			skip[d.Digest] = true
		}
	}
	if len(skip) == 0 {
		return blobs, children, nil
	}
	return dependencies(idx, skip)
}

// Get reads ref's descriptor with the pusher's keychain and transport, for
// what a push is made from (the images an index is merged from).
func (p *Pusher) Get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	ref, err := withInsecure(ref, p.insecure)
	if err != nil {
		return nil, err
	}
	return p.puller.Get(ctx, ref)
}

// serves reports whether the registry serves digest under ref. An error
// counts as no: if the registry is really unreachable, the upload that
// follows fails with a better error.
func (p *Pusher) serves(ctx context.Context, ref name.Reference, digest v1.Hash) bool {
	desc, err := p.puller.Head(ctx, ref)
	return err == nil && desc.Digest == digest
}

// stepError says which registry and step failed. A refusal (401/403) names
// the scope that was asked for, since that is what the user has to fix.
func stepError(repo name.Repository, step string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("authenticating to %s: %s: access to repository %s (scope %q) refused: %w",
			repo.RegistryStr(), step, repo.RepositoryStr(), repo.Scope(transport.PushScope), err)
	}
	if errors.As(err, &terr) && terr.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%s: rate limited by %s, retries exhausted: %w", step, repo.RegistryStr(), err)
	}
	return fmt.Errorf("%s on %s: %w", step, repo.RegistryStr(), err)
}

// dependencies returns the distinct blobs (layers and configs) under m and,
// for an index, its child manifests with every child before its parent,
// leaving out the manifests in skip and what is under them.
func dependencies(m manifest, skip map[v1.Hash]bool) ([]v1.Layer, []manifest, error) {
	var (
		blobs    []v1.Layer
		children []manifest
		seen     = map[v1.Hash]bool{}
	)
	addBlob := func(l v1.Layer) error {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if !seen[d] {
			seen[d] = true
			blobs = append(blobs, l)
		}
		return nil
	}
	var walk func(m manifest, top bool) error
	walk = func(m manifest, top bool) error {
		if !top && len(skip) > 0 {
			d, err := m.Digest()
			if err != nil {
				return err
			}
			if skip[d] {
				return nil
			}
		}
		switch m := m.(type) {
		case v1.Image:
			ls, err := m.Layers()
			if err != nil {
				return err
			}
			for _, l := range ls {
				if err := addBlob(l); err != nil {
					return err
				}
			}
			cl, err := partial.ConfigLayer(m)
			if err != nil {
				return err
			}
			if err := addBlob(cl); err != nil {
				return err
			}
		case v1.ImageIndex:
			ms, err := partial.Manifests(m)
			if err != nil {
				return err
			}
			for _, c := range ms {
				switch c := c.(type) {
				case v1.Image:
					if err := walk(c, false); err != nil {
						return err
					}
				case v1.ImageIndex:
					if err := walk(c, false); err != nil {
						return err
					}
				case v1.Layer:
					if err := addBlob(c); err != nil {
						return err
					}
				}
			}
		}
		if !top {
			d, err := m.Digest()
			if err != nil {
				return err
			}
			if !seen[d] {
				seen[d] = true
				children = append(children, m)
			}
		}
		return nil
	}
	if err := walk(m, true); err != nil {
		return nil, nil, err
	}
	return blobs, children, nil
}

// immutableTagAnswers are the registries' words for a tag that cannot be
// overwritten, the ones kaniko's --push-ignore-immutable-tag-errors knows:
// Artifact Registry's and ECR's. Neither has an error code of its own
// (ECR says TAG_INVALID, which it also says of malformed tags).
var immutableTagAnswers = []string{
	// https://cloud.google.com/artifact-registry/docs/docker/troubleshoot#push
	"The repository has enabled tag immutability",
	// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-tag-mutability.html
	"cannot be overwritten because the repository is immutable",
}

// IsImmutableTag reports whether err is a registry refusing to move a tag
// because the repository's tags are immutable.
func IsImmutableTag(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, a := range immutableTagAnswers {
		if strings.Contains(msg, a) {
			return true
		}
	}
	return false
}
