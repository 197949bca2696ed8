package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tonistiigi/go-csvvalue"

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

  # Build into an OCI layout and a docker-archive tarball
  imgbuild build -o type=oci,dest=out/layout -o type=docker,dest=app.tar -t app:dev .

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
	f.StringArrayVarP(&bo.outputs, "output", "o", nil, `output "type=registry|oci|tar|docker[,dest=PATH]" (repeatable)`)
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
	return cmd
}

// output is one parsed --output.
type output struct {
	typ  string // registry, oci, tar, docker
	dest string
	refs []name.Reference
}

// buildPlan is the build's options, validated and resolved before any work
// starts, so that a bad flag fails before a pull or a RUN.
type buildPlan struct {
	req     builder.Request
	refs    []name.Reference
	outputs []output
	push    []name.Reference
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
	for _, o := range bo.outputs {
		out, err := parseOutput(o, bo.reg.insecure)
		if err != nil {
			return nil, err
		}
		if out.typ == "registry" {
			refs := append(append([]name.Reference{}, p.refs...), out.refs...)
			if len(refs) == 0 {
				return nil, fmt.Errorf("--output %q: type=registry needs --tag or name=", o)
			}
			p.push = publish.Dedupe(append(p.push, refs...))
			continue
		}
		out.refs = append(append([]name.Reference{}, p.refs...), out.refs...)
		p.outputs = append(p.outputs, out)
	}
	if err := bo.cache.apply(&p.req); err != nil {
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

// parseOutput parses a buildx-style --output value.
func parseOutput(s string, insecure []string) (output, error) {
	fields, err := csvvalue.Fields(s, nil)
	if err != nil {
		return output{}, fmt.Errorf("--output %q: %w", s, err)
	}
	var out output
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			// buildx shorthand: -o DIR is a local export, which imgbuild
			// does not do; be explicit rather than guess.
			return output{}, fmt.Errorf("--output %q: want type=registry|oci|tar|docker[,dest=PATH]", s)
		}
		switch strings.ToLower(k) {
		case "type":
			out.typ = v
		case "dest":
			out.dest = v
		case "name":
			for _, n := range strings.Split(v, ",") {
				ref, err := registry.ParseReference(n, insecure)
				if err != nil {
					return output{}, fmt.Errorf("--output %q: %w", s, err)
				}
				out.refs = append(out.refs, ref)
			}
		case "push":
			if v == "true" {
				out.typ = "registry"
			}
		default:
			return output{}, fmt.Errorf("--output %q: unknown key %q", s, k)
		}
	}
	switch out.typ {
	case "registry":
	case "oci", "tar", "docker":
		if out.dest == "" {
			return output{}, fmt.Errorf("--output %q: type=%s needs dest=", s, out.typ)
		}
		if out.typ == "oci" && out.dest == "-" {
			return output{}, fmt.Errorf("--output %q: an OCI layout is a directory; use type=tar for a tarball on stdout", s)
		}
	case "":
		return output{}, fmt.Errorf("--output %q: missing type=", s)
	default:
		return output{}, fmt.Errorf("--output %q: unknown type %q (want registry, oci, tar or docker)", s, out.typ)
	}
	return out, nil
}

func runBuild(cmd *cobra.Command, ro *rootOptions, bo *buildOptions, contextDir string) (err error) {
	ctx := cmd.Context()
	p, err := bo.plan(contextDir, cmd.InOrStdin(), os.LookupEnv)
	if err != nil {
		return err
	}
	// buildx's warning; executor (no --push flag) has kaniko's --no-push,
	// which says the same on purpose.
	if len(p.refs) > 0 && len(p.push) == 0 && len(p.outputs) == 0 && cmd.Flags().Lookup("push") != nil {
		ro.log.Warn("No output specified: the build result will only remain in the build cache; use --push to push the tags or -o type=oci|tar|docker,dest=PATH to write the image out")
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
	cacheOpts, err := bo.cache.builderOptions()
	if err != nil {
		return err
	}
	regOpts.Progress = cmd.ErrOrStderr()
	bopts := []builder.Option{
		builder.WithRunc(bo.state.runc),
		builder.WithAllowInsecureRunc(bo.allowInsecureRunc),
		builder.WithSnapshotter(bo.state.snapshotter),
		builder.WithExternalFrontends(bo.allowExternalFrontend),
		builder.WithWaitForLock(bo.state.wait),
		builder.WithLogger(ro.log),
		builder.WithExecutor(bo.state.chosen),
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
		return stateDirHint(err, cmd.Flags().Lookup("snapshotter") != nil)
	}
	defer closeBuilder(b, &err)

	res, err := b.Build(ctx, p.req)
	var fe *builder.ExternalFrontendError
	if errors.As(err, &fe) {
		return fmt.Errorf("%w; use --allow-external-frontend to pull and run %s", err, fe.Ref)
	}
	if err != nil {
		return err
	}

	po := publish.Options{
		Push:          p.push,
		Registry:      regOpts,
		Names:         p.refs,
		IIDFile:       bo.iidFile,
		MetadataFile:  bo.metadataFile,
		DigestFiles:   bo.digests.DigestFiles,
		BuilderOutput: bo.builderOutput,
		Stdout:        cmd.OutOrStdout(),
	}
	// Base image layers are mounted from where they were pulled.
	po.Registry.BlobSources = res.BlobSources
	toStdout := false
	for _, o := range p.outputs {
		toStdout = toStdout || o.dest == "-"
		po.Outputs = append(po.Outputs, publish.Output{Type: o.typ, Dest: o.dest, Refs: o.refs})
	}
	if _, err := publish.Publish(ctx, res.Image, po); err != nil {
		return err
	}
	if !toStdout {
		fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
	}
	return nil
}

// digestFlags are kaniko's digest file flags.
type digestFlags struct{ publish.DigestFiles }

func (d *digestFlags) addFlags(f *pflag.FlagSet) {
	f.StringVar(&d.Digest, "digest-file", "", `write the image digest ("sha256:...", no newline) to this file or https:// URL (PUT)`)
	f.StringVar(&d.NameDigest, "image-name-with-digest-file", "", `write "REPOSITORY@DIGEST", one line per tag, to this file or https:// URL (PUT)`)
	f.StringVar(&d.NameTagDigest, "image-name-tag-with-digest-file", "", `write "REPOSITORY:TAG@DIGEST", one line per tag, to this file or https:// URL (PUT)`)
}
