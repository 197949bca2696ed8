package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tonistiigi/go-csvvalue"
	"golang.org/x/term"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/publish"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// buildOptions are `imgbuild build`'s flags, named as in `docker buildx build`.
type buildOptions struct {
	file         string
	tags         []string
	push         bool
	load         bool
	quiet        bool
	buildArgs    []string
	target       string
	labels       []string
	secrets      []string
	noCache      bool
	progress     string
	outputs      []string
	iidFile      string
	metadataFile string
	platform     string
	state        stateFlags
	reg          registryFlags
	cache        cacheFlags
	compression  compressionFlags
	limits       limitFlags
	digests      digestFlags
	// builderOutput is kaniko's BUILDER_OUTPUT directory (Cloud Build):
	// it gets an "images" file naming each pushed image.
	builderOutput         string
	allowInsecureRunc     bool
	allowExternalFrontend bool
	// outputSpecs map an --output value translated from buildctl's to the
	// value as given, for messages.
	outputSpecs map[string]string

	// Set by executor for kaniko's flags that build has no flag for.
	dockerfileData  []byte   // a downloaded --dockerfile; file is its URL
	checkPush       []string // references checked for push access before the build
	ignoreImmutable bool     // an immutable tag's refusal is a warning
	protect         []string // --ignore-path, for the in-place executor
}

func newBuildCmd(ro *rootOptions) *cobra.Command { return newBuildCmdWith(ro, &buildOptions{}) }

// newBuildCmdWith binds the command's flags to bo.
func newBuildCmdWith(ro *rootOptions, bo *buildOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "build [flags] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from a Dockerfile with an embedded BuildKit, run RUN steps
with runc, and push the result or write it out. No daemon is needed.

The image digest is printed on standard output; progress and logs go to
standard error.`,
		Example: `  # Build and push two tags
  imgbuild build -t registry.example.com/app:1.2 -t registry.example.com/app:latest --push .

  # Build into an OCI tarball, an OCI layout directory and a docker-archive
  # tarball (docker load -i app.tar)
  imgbuild build -o type=oci,dest=app.oci.tar -o type=oci,dest=out/layout,tar=false -o type=docker,dest=app.tar -t app:dev .

  # One runner per architecture: push by digest, untagged, then merge
  # (imgbuild imagetools create -t registry.example.com/app:1.2 registry.example.com/app@sha256:...)
  imgbuild build --platform linux/arm64 -o type=image,name=registry.example.com/app,push-by-digest=true,name-canonical=true --metadata-file meta.json .

  # The root filesystem into a directory
  imgbuild build -o type=local,dest=rootfs .

  # Dockerfile from stdin, secret from the environment
  imgbuild build -f - --secret id=npmrc,env=NPM_TOKEN . < Dockerfile`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rerun, err := ro.enterSandbox(cmd, &bo.state); rerun || err != nil {
				return err
			}
			return runBuild(cmd, ro, bo, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&bo.file, "file", "f", "", `Dockerfile path (default "CONTEXT/Dockerfile"; "-" reads standard input)`)
	f.StringArrayVarP(&bo.tags, "tag", "t", nil, `image reference "name:tag" (repeatable)`)
	f.BoolVar(&bo.push, "push", false, "push every tag (same as --output type=registry)")
	// buildx's --load, so that the error can say what to do instead.
	f.BoolVar(&bo.load, "load", false, "not supported: there is no daemon; use -o type=docker,dest=FILE or --push")
	_ = f.MarkHidden("load")
	f.StringArrayVar(&bo.buildArgs, "build-arg", nil, `build-time variable "KEY=VALUE"; a bare "KEY" takes its value from the environment`)
	f.StringVar(&bo.target, "target", "", "build stage to build")
	f.StringArrayVar(&bo.labels, "label", nil, `image label "KEY=VALUE"`)
	f.StringArrayVar(&bo.secrets, "secret", nil, `secret for RUN --mount=type=secret: "id=ID,src=PATH" or "id=ID,env=VAR"`)
	f.BoolVar(&bo.noCache, "no-cache", false, "do not use the build cache")
	f.StringVar(&bo.progress, "progress", "auto", "progress output: auto, tty, plain, rawjson or quiet")
	f.BoolVarP(&bo.quiet, "quiet", "q", false, "no progress output (same as --progress quiet)")
	f.StringArrayVarP(&bo.outputs, "output", "o", nil, `output as in buildx: "type=registry|image|oci|docker|tar|local[,dest=PATH][,tar=false][,name=REF][,push=BOOL][,push-by-digest=BOOL][,name-canonical=BOOL]", "DIR" (type=local) or "-" (type=tar to stdout) (repeatable)`)
	f.StringVar(&bo.iidFile, "iidfile", "", "write the image ID (config digest) to this file")
	f.StringVar(&bo.metadataFile, "metadata-file", "", "write build result metadata (JSON) to this file")
	f.StringVar(&bo.platform, "platform", "", "target platform, e.g. linux/amd64 (default: the host's)")
	bo.reg.addFlags(f)
	bo.cache.addFlags(f)
	bo.compression.addFlags(f)
	bo.limits.addFlags(f)
	bo.digests.addFlags(f)
	bo.state.addFlags(f)
	bo.state.addExecutorFlag(f)
	f.BoolVar(&bo.allowInsecureRunc, "allow-insecure-runc", false, "run RUN steps with a runc that lacks the 2024/2025 container-escape fixes")
	f.BoolVar(&bo.allowExternalFrontend, "allow-external-frontend", false, "allow '# syntax=' to pull and run a frontend image other than docker/dockerfile")
	registerCompletions(cmd)
	return cmd
}

// output is one parsed --output.
type output struct {
	spec string // as given, for messages
	typ  string // registry, image, oci, docker, tar, local
	dest string
	dir  bool // oci: tar=false
	push bool // image: push=true
	// byDigest is push-by-digest=true: refs name repositories only, and
	// the image goes there by digest, untagged.
	byDigest bool
	// canonical is name-canonical=true: the metadata file names the
	// image REPOSITORY@DIGEST.
	canonical bool
	refs      []name.Reference
}

// buildPlan is the build's options, validated and resolved before any work
// starts, so that a bad flag fails before a pull or a RUN.
type buildPlan struct {
	req     builder.Request
	refs    []name.Reference
	outputs []output
	push    []name.Reference
	// kept is set by type=image,push=false: the result is meant to stay
	// in the cache, so there is no "No output specified" warning.
	kept bool
	// names are type=image,push=false's name=s, for the metadata file.
	names []name.Reference
	// byDigest are the repositories of push-by-digest=true outputs.
	byDigest []name.Repository
	// canonical is set by name-canonical=true.
	canonical bool
	// tagsByDigest is set when a push-by-digest output took its names
	// from --tag: the tags are then repositories, not names of the image.
	tagsByDigest bool
}

func (bo *buildOptions) plan(contextDir string, stdin io.Reader, getenv func(string) (string, bool)) (*buildPlan, error) {
	p := &buildPlan{}
	p.req = builder.Request{
		ContextDir: contextDir,
		Target:     bo.target,
		NoCache:    bo.noCache,
		Platform:   bo.platform,
		Progress:   bo.progress,
		Secrets:    bo.secrets,
		BuildArgs:  map[string]string{},
		Labels:     map[string]string{},
	}
	if bo.load {
		return nil, errors.New("--load: imgbuild has no daemon to load the image into; use -o type=docker,dest=FILE (then docker load -i FILE) or --push")
	}
	switch bo.progress {
	case "auto", "tty", "plain", "rawjson", "quiet":
	default:
		return nil, fmt.Errorf("--progress %q: want auto, tty, plain, rawjson or quiet", bo.progress)
	}
	if bo.quiet {
		// As buildx: -q overrides only the default.
		if bo.progress != "auto" && bo.progress != "quiet" {
			return nil, fmt.Errorf("--progress %q and --quiet cannot be used together", bo.progress)
		}
		p.req.Progress = "quiet"
	}
	switch {
	case bo.dockerfileData != nil:
		p.req.Dockerfile, p.req.DockerfilePath = bo.dockerfileData, bo.file
	case bo.file == "-":
		df, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading Dockerfile from stdin: %w", err)
		}
		p.req.Dockerfile, p.req.DockerfilePath = df, "Dockerfile (stdin)"
	case bo.file != "":
		p.req.DockerfilePath = bo.file
	default:
		p.req.DockerfilePath = filepath.Join(contextDir, "Dockerfile")
	}
	for _, a := range bo.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, fmt.Errorf("--build-arg %q: want KEY=VALUE or KEY", a)
		}
		if !ok {
			// docker build: a bare KEY is taken from the environment, and
			// skipped when unset.
			if v, ok = getenv(k); !ok {
				continue
			}
		}
		p.req.BuildArgs[k] = v
	}
	// buildx reads SOURCE_DATE_EPOCH from the environment; a --build-arg
	// of it wins.
	if _, set := p.req.BuildArgs["SOURCE_DATE_EPOCH"]; !set {
		if v, ok := getenv("SOURCE_DATE_EPOCH"); ok && v != "" {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q in the environment: want a Unix time in seconds", v)
			}
			p.req.BuildArgs["SOURCE_DATE_EPOCH"] = v
		}
	}
	for _, l := range bo.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		p.req.Labels[k] = v
	}
	for _, t := range bo.tags {
		ref, err := registry.ParseReference(t, bo.reg.insecure)
		if err != nil {
			return nil, fmt.Errorf("--tag: %w", err)
		}
		p.refs = append(p.refs, ref)
	}
	if bo.push {
		if len(p.refs) == 0 {
			return nil, errors.New("--push needs at least one --tag")
		}
		p.push = p.refs
	}
	toStdout := ""
	for _, o := range bo.outputs {
		shown := o
		if v, ok := bo.outputSpecs[o]; ok {
			shown = v
		}
		out, err := parseOutputAs(o, shown, bo.reg.insecure)
		if err != nil {
			return nil, err
		}
		if err := out.checkDest(); err != nil {
			return nil, err
		}
		if out.dest == "-" {
			if toStdout != "" {
				return nil, fmt.Errorf("--output %q and --output %q: only one output can go to standard output", toStdout, shown)
			}
			toStdout = shown
		}
		refs := append(append([]name.Reference{}, p.refs...), out.refs...)
		p.canonical = p.canonical || out.canonical
		switch {
		case out.byDigest && (out.typ == "registry" || out.push):
			// buildx: name= names the repository; a tag in it is dropped.
			if len(out.refs) == 0 {
				if len(p.refs) == 0 {
					return nil, fmt.Errorf("--output %q: push-by-digest=true needs name=REPOSITORY or --tag", shown)
				}
				p.tagsByDigest = true
			}
			for _, r := range refs {
				if !slices.ContainsFunc(p.byDigest, func(x name.Repository) bool { return x.Name() == r.Context().Name() }) {
					p.byDigest = append(p.byDigest, r.Context())
				}
			}
			continue
		case out.byDigest:
			return nil, fmt.Errorf("--output %q: push-by-digest=true with push=false: there is no image store to keep an untagged image in; drop push=false", shown)
		case out.typ == "registry" || out.typ == "image" && out.push:
			if len(refs) == 0 {
				return nil, fmt.Errorf("--output %q: pushing needs --tag or name=", shown)
			}
			p.push = publish.Dedupe(append(p.push, refs...))
			continue
		case out.typ == "image":
			// buildx: the image stays where it was built, here the
			// state dir's cache; name= still names it in the metadata file.
			p.names = append(p.names, out.refs...)
			p.kept = true
			continue
		}
		out.refs = refs
		p.outputs = append(p.outputs, out)
	}
	if err := bo.cache.apply(&p.req, bo.reg.insecure); err != nil {
		return nil, err
	}
	if err := bo.compression.apply(&p.req); err != nil {
		return nil, err
	}
	if _, err := bo.limits.limits(); err != nil {
		return nil, err
	}
	return p, nil
}

// outputKeys are the keys each --output type takes, besides type=.
var outputKeys = map[string][]string{
	"registry": {"name", "push", "push-by-digest", "name-canonical"},
	"image":    {"name", "push", "push-by-digest", "name-canonical"},
	"oci":      {"dest", "tar", "name"},
	"docker":   {"dest", "name"},
	"tar":      {"dest"},
	"local":    {"dest"},
}

// parseOutput parses a --output value as buildx does: CSV key=value
// fields, "-o DIR" for type=local and "-o -" for a root filesystem tarball
// on stdout. buildctl's ParseOutput is not used: it opens the destination
// file as it parses, where imgbuild writes beside it and renames.
func parseOutput(s string, insecure []string) (output, error) {
	return parseOutputAs(s, s, insecure)
}

// parseOutputAs is parseOutput for a value translated from shown (a
// buildctl --output), which its messages name.
func parseOutputAs(s, shown string, insecure []string) (output, error) {
	bad := func(format string, a ...any) (output, error) {
		return output{}, fmt.Errorf("--output %q: %s", shown, fmt.Sprintf(format, a...))
	}
	fields, err := csvvalue.Fields(s, nil)
	if err != nil {
		return bad("%v", err)
	}
	out := output{spec: shown}
	// buildx's rule: one field that is the whole value and not type=...
	if len(fields) == 1 && fields[0] == s && !strings.HasPrefix(s, "type=") {
		if fields[0] == "" {
			return bad("empty; want DIR, - or type=...")
		}
		out.typ, out.dest = "local", fields[0]
		if out.dest == "-" {
			out.typ = "tar"
		}
		return out, nil
	}
	kv := map[string]string{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return bad("%q is not key=value", f)
		}
		k = strings.ToLower(k)
		if _, dup := kv[k]; dup {
			return bad("%s= given twice", k)
		}
		kv[k] = v
	}
	out.typ = kv["type"]
	if out.typ == "" {
		return bad("missing type= (want registry, image, oci, docker, tar or local)")
	}
	keys, ok := outputKeys[out.typ]
	if !ok {
		return bad("unknown type %q (want registry, image, oci, docker, tar or local)", out.typ)
	}
	for k := range kv {
		if k != "type" && !slices.Contains(keys, k) {
			return bad("key %q does not apply to type=%s (it takes %s)", k, out.typ, strings.Join(keys, "=, ")+"=")
		}
	}
	out.dest = kv["dest"]
	if v, ok := kv["name"]; ok {
		for _, n := range strings.Split(v, ",") {
			ref, err := registry.ParseReference(n, insecure)
			if err != nil {
				return bad("name=%q: %v", n, err)
			}
			out.refs = append(out.refs, ref)
		}
	}
	if v, ok := kv["push"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("push=%q: want true or false", v)
		}
		out.push = b
	}
	for k, dst := range map[string]*bool{"push-by-digest": &out.byDigest, "name-canonical": &out.canonical} {
		if v, ok := kv[k]; ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("%s=%q: want true or false", k, v)
			}
			*dst = b
		}
	}
	if v, ok := kv["tar"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("tar=%q: want true or false", v)
		}
		out.dir = !b
	}
	if _, set := kv["push"]; out.byDigest && !set {
		// There is no image store to keep an untagged image in: asking
		// for push-by-digest is asking for the push.
		out.push = true
	}
	switch out.typ {
	case "registry":
		// buildx: type=image with push=true, whatever push= says.
		out.push = true
	case "docker":
		if out.dest == "" {
			return bad("type=docker needs dest=FILE: imgbuild has no daemon to load into; write the tarball and `docker load -i FILE` it")
		}
	case "oci", "tar", "local":
		if out.dest == "" {
			return bad("type=%s needs dest=", out.typ)
		}
	}
	if out.dest == "-" && (out.typ == "local" || out.dir) {
		return bad("dest=-: a directory cannot go to standard output; use type=tar (root filesystem) or type=oci (image) for a tarball")
	}
	return out, nil
}

// checkDest fails when o's dest cannot be written, before the build
// spends any time: its directory must exist, and a tarball cannot replace a
// directory, nor a directory a file.
func (o output) checkDest() error {
	if o.dest == "" || o.dest == "-" {
		return nil
	}
	parent := filepath.Dir(o.dest)
	if fi, err := os.Stat(parent); err != nil {
		return fmt.Errorf("--output %q: dest=%s: directory %s: %w", o.spec, o.dest, parent, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("--output %q: dest=%s: %s is not a directory", o.spec, o.dest, parent)
	}
	fi, err := os.Stat(o.dest)
	if err != nil {
		return nil
	}
	wantDir := o.typ == "local" || o.dir
	switch {
	case wantDir && !fi.IsDir():
		return fmt.Errorf("--output %q: dest=%s exists and is not a directory", o.spec, o.dest)
	case !wantDir && fi.IsDir():
		return fmt.Errorf("--output %q: dest=%s is a directory; type=%s writes a tarball file", o.spec, o.dest, o.typ)
	}
	return nil
}

func runBuild(cmd *cobra.Command, ro *rootOptions, bo *buildOptions, contextDir string) (err error) {
	ctx := cmd.Context()
	p, err := bo.plan(contextDir, cmd.InOrStdin(), os.LookupEnv)
	if err != nil {
		return err
	}
	// buildx's warning; executor (no --push flag) has kaniko's --no-push,
	// which says the same on purpose.
	if len(p.refs) > 0 && len(p.push) == 0 && len(p.byDigest) == 0 && len(p.outputs) == 0 && !p.kept && cmd.Flags().Lookup("push") != nil {
		ro.log.Warn("No output specified: the build result will only remain in the build cache; use --push to push the tags or -o type=oci|docker,dest=PATH to write the image out")
	}
	// Staged before the build: the temporary files beside each dest prove
	// it writable, and nothing is left there if the build fails.
	staged, err := stageOutputs(p.outputs, cmd.OutOrStdout())
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range staged {
			s.Discard()
		}
	}()
	for _, s := range staged {
		o := s.Output()
		p.req.Exports = append(p.req.Exports, builder.Export{Type: o.Type, Names: refNames(o.Refs), Dir: s.Dir(), File: s.File()})
	}
	dir, err := bo.state.dir()
	if err != nil {
		return err
	}
	p.req.ProgressOut = cmd.ErrOrStderr()

	regOpts, regBuilderOpts, err := bo.reg.options()
	if err != nil {
		return err
	}
	if bo.ignoreImmutable {
		regOpts.OnImmutableTag = func(ref name.Reference, err error) {
			ro.log.Warnf("%s: the registry keeps the tag as it is (immutable tag; --push-ignore-immutable-tag-errors): %v", ref, err)
		}
	}
	// Before the builder starts, so before any pull.
	if err := checkPush(ctx, bo.checkPush, regOpts); err != nil {
		return err
	}
	cacheOpts, err := bo.cache.builderOptions(bo.reg.insecure)
	if err != nil {
		return err
	}
	// Push lines are plain text: quiet is quiet, and rawjson is only JSON.
	if p.req.Progress != "quiet" && p.req.Progress != "rawjson" {
		regOpts.Progress = cmd.ErrOrStderr()
	}
	bopts := []builder.Option{
		builder.WithRunc(bo.state.runc),
		builder.WithAllowInsecureRunc(bo.allowInsecureRunc),
		builder.WithSnapshotter(bo.state.snapshotter),
		builder.WithExternalFrontends(bo.allowExternalFrontend),
		builder.WithWaitForLock(bo.state.wait),
		builder.WithLogger(ro.log),
		builder.WithExecutor(bo.state.chosen),
		builder.WithProtectedPaths(bo.protect...),
	}
	bopts = append(bopts, regBuilderOpts...)
	bopts = append(bopts, cacheOpts...)
	limits, err := bo.limits.limits()
	if err != nil {
		return err
	}
	bopts = append(bopts, builder.WithLimits(limits))
	b, err := builder.New(ctx, dir, bopts...)
	if err != nil {
		// executor has no --snapshotter and no --allow-insecure-runc.
		err = insecureRuncHint(err, cmd.Flags().Lookup("allow-insecure-runc") != nil)
		return bo.cache.flagError(stateDirHint(err, cmd.Flags().Lookup("snapshotter") != nil))
	}
	defer func() {
		closeBuilder(b, &err)
		err = bo.cache.flagError(err)
	}()

	res, err := b.Build(ctx, p.req)
	var fe *builder.ExternalFrontendError
	if errors.As(err, &fe) {
		return fmt.Errorf("%w; use --allow-external-frontend to pull and run %s", err, fe.Ref)
	}
	if err != nil {
		return err
	}

	// Written, so committed before the push, as the layouts are.
	for _, s := range staged {
		if err := s.Commit(); err != nil {
			return err
		}
	}
	names := p.names
	if !p.tagsByDigest || len(p.push) > 0 {
		names = append(append([]name.Reference{}, p.refs...), p.names...)
	}
	po := publish.Options{
		Push:          p.push,
		ByDigest:      p.byDigest,
		NameCanonical: p.canonical,
		Registry:      regOpts,
		Names:         publish.Dedupe(names),
		IIDFile:       bo.iidFile,
		MetadataFile:  bo.metadataFile,
		DigestFiles:   bo.digests.DigestFiles,
		BuilderOutput: bo.builderOutput,
	}
	// Base image layers are mounted from where they were pulled.
	po.Registry.BlobSources = res.BlobSources
	toStdout := false
	for _, o := range p.outputs {
		toStdout = toStdout || o.dest == "-"
		if o.dir {
			po.Outputs = append(po.Outputs, publish.Output{Type: o.typ, Dest: o.dest, Dir: true, Refs: o.refs})
		}
	}
	if _, err := publish.Publish(ctx, res.Image, po); err != nil {
		return err
	}
	if !toStdout {
		fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
	}
	return nil
}

// stageOutputs makes the temporary places BuildKit's exporters write the
// outputs into (all but OCI layout directories, which are written from the
// image afterwards). A tarball is not written to a terminal, as buildx
// refuses to.
func stageOutputs(outs []output, stdout io.Writer) ([]*publish.Staged, error) {
	var staged []*publish.Staged
	for _, o := range outs {
		if o.dir {
			continue
		}
		if o.dest == "-" {
			if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				err := fmt.Errorf("--output %q: dest=- is a terminal; redirect standard output to a file or pipe", o.spec)
				for _, s := range staged {
					s.Discard()
				}
				return nil, err
			}
		}
		s, err := publish.Stage(publish.Output{Type: o.typ, Dest: o.dest, Refs: o.refs}, stdout)
		if err != nil {
			for _, s := range staged {
				s.Discard()
			}
			return nil, fmt.Errorf("--output %q: %w", o.spec, err)
		}
		staged = append(staged, s)
	}
	return staged, nil
}

func refNames(refs []name.Reference) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.Name())
	}
	return out
}

// digestFlags are kaniko's digest file flags.
type digestFlags struct{ publish.DigestFiles }

func (d *digestFlags) addFlags(f *pflag.FlagSet) {
	f.StringVar(&d.Digest, "digest-file", "", `write the image digest ("sha256:...", no newline) to this file or https:// URL (PUT)`)
	f.StringVar(&d.NameDigest, "image-name-with-digest-file", "", `write "REPOSITORY@DIGEST", one line per tag, to this file or https:// URL (PUT)`)
	f.StringVar(&d.NameTagDigest, "image-name-tag-with-digest-file", "", `write "REPOSITORY:TAG@DIGEST", one line per tag, to this file or https:// URL (PUT)`)
}

// checkPush fails unless every reference's repository accepts a push from
// these credentials (see registry.Pusher.CheckPush).
func checkPush(ctx context.Context, refs []string, o registry.Options) error {
	if len(refs) == 0 {
		return nil
	}
	var parsed []name.Reference
	for _, r := range refs {
		ref, err := registry.ParseReference(r, o.Insecure)
		if err != nil {
			return err
		}
		parsed = append(parsed, ref)
	}
	p, err := registry.NewPusher(o)
	if err != nil {
		return err
	}
	if err := p.CheckPush(ctx, parsed); err != nil {
		return fmt.Errorf("%w (use --skip-push-permission-check to build anyway)", err)
	}
	return nil
}
