package cmd

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// buildctlOptions are buildctl's global flags and the flags of `buildctl
// build` for the dockerfile.v0 frontend, with buildctl's names and
// defaults. They are translated onto buildOptions in one place, toBuild, so
// that `imgbuild buildctl build` and `imgbuild build` share every behaviour
// after flag parsing, as `imgbuild executor` does for kaniko's.
type buildctlOptions struct {
	// Global flags: there is no daemon, so they only earn a note.
	addr    string
	debug   bool
	wait    bool
	tls     map[string]*string
	timeout int

	frontend     string
	locals       []string
	opts         []string
	outputs      []string
	exportCache  []string
	importCache  []string
	secrets      []string
	progress     string
	metadataFile string
	noCache      bool
	trace        string

	// refused are buildctl build flags imgbuild has no equivalent for.
	refused map[string]*[]string

	// contextDir and dockerfileDir are --local context= and dockerfile=,
	// set by toBuild.
	contextDir, dockerfileDir string
	// compressionFrom is the --output whose compression= options set the
	// build's layer compression.
	compressionFrom string
	// notes are what toBuild accepted without effect, said once the
	// build runs (in the process that builds, after any re-exec).
	notes []string
}

// buildctlTLSFlags are buildctl's flags for its connection to buildkitd.
var buildctlTLSFlags = []string{"tlsservername", "tlscacert", "tlscert", "tlskey", "tlsdir"}

// buildctlRefusedFlags are `buildctl build` flags with no meaning here, and
// why.
var buildctlRefusedFlags = []struct{ name, why string }{
	{"ssh", "SSH agent forwarding (RUN --mount=type=ssh) is not supported"},
	{"allow", "entitlements (network.host, security.insecure, device) are not supported: RUN steps never get extra privileges"},
	{"oci-layout", "OCI layout sources are not supported; push the image to a registry and use it from there"},
	{"source-policy-file", "source policies are not supported"},
	{"ref-file", "there is no daemon, so no build ref to write"},
	{"registry-auth-tlscontext", "use --registry-certificate HOST=CA.pem, --registry-client-cert HOST=CERT,KEY or --skip-tls-verify-registry HOST"},
	{"debug-json-cache-metrics", "cache metrics are not supported"},
}

func newBuildctlCmd(ro *rootOptions) *cobra.Command {
	return buildctlCmd(ro, &buildctlOptions{}, &buildOptions{})
}

// buildctlCmd binds `buildctl` and its `build` to bc and bo.
func buildctlCmd(ro *rootOptions, bc *buildctlOptions, bo *buildOptions) *cobra.Command {
	bc.tls = map[string]*string{}
	bc.refused = map[string]*[]string{}
	root := &cobra.Command{
		Use:   "buildctl",
		Short: "Build with buildctl's flags (drop-in for buildctl build with the dockerfile.v0 frontend)",
		Long: `Build with buildctl's command line, in this process, without buildkitd:
the Dockerfile frontend's --local, --opt, --output, --export-cache,
--import-cache, --secret, --progress and --metadata-file mean what they mean
to buildctl. Installed or linked under the name "buildctl", imgbuild is this
command, so that pipelines keep their buildctl lines.`,
		Example: `  buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \
    --output type=image,name=registry.example.com/app:1.0,push=true`,
		Args: cobra.NoArgs,
		// --debug is buildctl's log level switch.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if bc.debug {
				ro.logLevel = "debug"
			}
			return ro.setupLogging(cmd.ErrOrStderr())
		},
	}
	pf := root.PersistentFlags()
	addr := os.Getenv("BUILDKIT_HOST")
	if addr == "" {
		addr = builder.BuildctlDefaultAddr
	}
	pf.StringVar(&bc.addr, "addr", addr, "buildkitd address: accepted, but imgbuild builds in this process and connects to no daemon")
	pf.BoolVar(&bc.debug, "debug", false, "debug logs (same as --log-level debug)")
	pf.BoolVar(&bc.wait, "wait", false, "wait for the state directory when another imgbuild holds it with other settings (buildctl: wait for buildkitd)")
	pf.IntVar(&bc.timeout, "timeout", 5, "accepted for compatibility: there is no connection to time out")
	for _, n := range buildctlTLSFlags {
		v := new(string)
		bc.tls[n] = v
		pf.StringVar(v, n, "", "buildkitd connection setting: accepted and ignored (no daemon)")
		_ = pf.MarkHidden(n)
	}
	_ = pf.MarkHidden("timeout")

	build := &cobra.Command{
		Use:     "build",
		Aliases: []string{"b"},
		Short:   "Build a Dockerfile as buildctl build --frontend dockerfile.v0 does",
		Example: `  buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \
    --opt build-arg:VERSION=1.2 --opt target=prod \
    --export-cache type=registry,ref=registry.example.com/app:cache,mode=max \
    --import-cache type=registry,ref=registry.example.com/app:cache \
    --output type=image,name=registry.example.com/app:1.2,push=true`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Translated first, so that a bad flag fails before a re-exec.
			if err := bc.toBuild(bo); err != nil {
				return err
			}
			if rerun, err := ro.enterSandbox(cmd, &bo.state); rerun || err != nil {
				return err
			}
			bc.warnNotes(ro.log)
			return runBuild(cmd, ro, bo, bc.contextDir)
		},
	}
	f := build.Flags()
	bc.addFlags(f)
	// imgbuild's own, which buildctl leaves to buildkitd's configuration.
	bo.state.addRootFlags(f)
	f.StringVar(&bo.state.snapshotter, "snapshotter", "auto", "snapshotter: auto, overlayfs, fuse-overlayfs or native")
	bo.state.addExecutorFlag(f)
	bo.reg.addFlags(f)
	bo.limits.addFlags(f)
	f.BoolVar(&bo.allowInsecureRunc, "allow-insecure-runc", false, "run RUN steps with a runc that lacks the 2024/2025 container-escape fixes")
	f.BoolVar(&bo.allowExternalFrontend, "allow-external-frontend", false, "allow --frontend gateway.v0 --opt source=IMAGE, '# syntax=' and BUILDKIT_SYNTAX to pull and run a frontend image other than docker/dockerfile")
	root.AddCommand(build)
	return root
}

func (bc *buildctlOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVarP(&bc.outputs, "output", "o", nil, `export: "type=image,name=REF[,push=true]", "type=registry,name=REF", "type=oci|docker|tar[,dest=FILE]" (standard output without dest), "type=oci,tar=false,dest=DIR", "type=local,dest=DIR" (repeatable)`)
	f.StringVar(&bc.progress, "progress", "auto", "progress output: auto, tty, plain, rawjson or quiet")
	f.StringVar(&bc.trace, "trace", "", "accepted and ignored: imgbuild writes no trace file")
	f.StringArrayVar(&bc.locals, "local", nil, `"context=DIR" and "dockerfile=DIR" (default: the context)`)
	f.StringVar(&bc.frontend, "frontend", "", "frontend: dockerfile.v0, or gateway.v0 with --opt source=IMAGE")
	f.StringArrayVar(&bc.opts, "opt", nil, `frontend option: filename=, target=, platform=, build-arg:NAME=VALUE, label:NAME=VALUE, no-cache= (repeatable)`)
	f.BoolVar(&bc.noCache, "no-cache", false, "do not use the build cache")
	f.StringArrayVar(&bc.exportCache, "export-cache", nil, `cache export: "type=registry,ref=REF[,mode=min|max]", "type=local,dest=DIR[,mode=…]", "type=inline" (repeatable)`)
	f.StringArrayVar(&bc.importCache, "import-cache", nil, `cache import: "type=registry,ref=REF", "type=local,src=DIR" (repeatable)`)
	f.StringArrayVar(&bc.secrets, "secret", nil, `secret for RUN --mount=type=secret: "id=ID,src=PATH" or "id=ID,env=VAR"`)
	f.StringVar(&bc.metadataFile, "metadata-file", "", "write build result metadata (JSON) to this file")
	for _, r := range buildctlRefusedFlags {
		v := new([]string)
		bc.refused[r.name] = v
		f.StringArrayVar(v, r.name, nil, "not supported: "+r.why)
		_ = f.MarkHidden(r.name)
	}
	_ = f.MarkHidden("trace")
}

// toBuild translates buildctl's options onto imgbuild build's.
func (bc *buildctlOptions) toBuild(bo *buildOptions) error {
	for _, r := range buildctlRefusedFlags {
		if v := *bc.refused[r.name]; len(v) > 0 {
			return fmt.Errorf("--%s %s: %s", r.name, v[0], r.why)
		}
	}
	bc.notes = nil
	if bc.addr != builder.BuildctlDefaultAddr {
		bc.notes = append(bc.notes, fmt.Sprintf("there is no daemon: --addr %s is ignored, imgbuild builds in this process", bc.addr))
	}
	var tls []string
	for _, n := range buildctlTLSFlags {
		if *bc.tls[n] != "" {
			tls = append(tls, "--"+n)
		}
	}
	if len(tls) > 0 {
		bc.notes = append(bc.notes, fmt.Sprintf("there is no daemon to connect to: ignoring %s", strings.Join(tls, ", ")))
	}
	if bc.trace != "" {
		bc.notes = append(bc.notes, fmt.Sprintf("--trace %s: imgbuild writes no trace file", bc.trace))
	}
	bo.state.wait = bc.wait
	bo.progress = bc.progress
	bo.metadataFile = bc.metadataFile
	bo.noCache = bc.noCache
	bo.secrets = bc.secrets

	if err := bc.localsToBuild(); err != nil {
		return err
	}
	attrs, err := builder.ParseFrontendOpts(bc.opts)
	if err != nil {
		return fmt.Errorf("--opt %w", err)
	}
	if err := bc.frontendToBuild(bo, attrs); err != nil {
		return err
	}
	filename := "Dockerfile"
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := attrs[k]
		bad := func(format string, a ...any) error {
			return fmt.Errorf("--opt %s=%s: %s", k, v, fmt.Sprintf(format, a...))
		}
		switch {
		case k == "filename":
			if v == "" {
				return bad("want a Dockerfile name, relative to --local dockerfile=")
			}
			filename = v
		case k == "target":
			bo.target = v
		case k == "platform":
			if strings.Contains(v, ",") {
				return bad("imgbuild builds one platform per build; run one build per platform")
			}
			bo.platform = v
		case k == "no-cache":
			if v != "" {
				return bad("per-stage no-cache is not supported; use --opt no-cache= (every step) or --no-cache")
			}
			bo.noCache = true
		case strings.HasPrefix(k, "build-arg:"):
			name := strings.TrimPrefix(k, "build-arg:")
			if name == "" {
				return bad("want build-arg:NAME=VALUE")
			}
			if env, ok := os.LookupEnv(name); ok && name == "SOURCE_DATE_EPOCH" && env == v {
				// Copied from the environment by buildctl's parser:
				// imgbuild build reads it there itself, and checks it.
				continue
			}
			bo.buildArgs = append(bo.buildArgs, name+"="+v)
		case strings.HasPrefix(k, "label:"):
			name := strings.TrimPrefix(k, "label:")
			if name == "" {
				return bad("want label:NAME=VALUE")
			}
			bo.labels = append(bo.labels, name+"="+v)
		case k == "context" || strings.HasPrefix(k, "context:"):
			return bad("named build contexts are not supported; only --local context= is")
		default:
			return bad("not an option imgbuild takes (filename, target, platform, build-arg:NAME, label:NAME, no-cache)")
		}
	}
	bo.file = filepath.Join(bc.dockerfileDir, filename)

	for _, o := range bc.outputs {
		if err := bc.outputToBuild(bo, o); err != nil {
			return err
		}
	}
	if err := bc.cacheToBuild(bo); err != nil {
		return err
	}
	return nil
}

// localsToBuild reads --local: the context, and the Dockerfile's directory
// (the context when not given).
func (bc *buildctlOptions) localsToBuild() error {
	seen := map[string]string{}
	for _, l := range bc.locals {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("--local %q: want NAME=DIR", l)
		}
		if k != "context" && k != "dockerfile" {
			return fmt.Errorf("--local %q: a Dockerfile build reads only --local context= and --local dockerfile= (named contexts are not supported)", l)
		}
		if prev, dup := seen[k]; dup && prev != v {
			return fmt.Errorf("--local %q: %s= given twice", l, k)
		}
		seen[k] = v
		fi, err := os.Stat(v)
		if err != nil {
			return fmt.Errorf("--local %q: %w", l, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("--local %q: %s is not a directory", l, v)
		}
	}
	bc.contextDir = seen["context"]
	if bc.contextDir == "" {
		return errors.New("--local context=DIR is required: the build context")
	}
	bc.dockerfileDir = seen["dockerfile"]
	if bc.dockerfileDir == "" {
		bc.dockerfileDir = bc.contextDir
	}
	return nil
}

// frontendToBuild checks --frontend. gateway.v0 runs the frontend image
// --opt source= names: docker/dockerfile on the built-in frontend, another
// only with --allow-external-frontend, through BUILDKIT_SYNTAX as a
// "# syntax=" line would.
func (bc *buildctlOptions) frontendToBuild(bo *buildOptions, attrs map[string]string) error {
	switch bc.frontend {
	case "dockerfile.v0":
		if v, ok := attrs["source"]; ok {
			return fmt.Errorf("--opt source=%s: only with --frontend gateway.v0", v)
		}
		return nil
	case "gateway.v0":
		src := attrs["source"]
		delete(attrs, "source")
		if src == "" {
			return errors.New("--frontend gateway.v0 needs --opt source=IMAGE, the frontend image")
		}
		if builder.IsBuiltinFrontend(src) {
			return nil
		}
		if !bo.allowExternalFrontend {
			return fmt.Errorf("--frontend gateway.v0 --opt source=%s pulls and runs that frontend image; pass --allow-external-frontend to allow it, or use --frontend dockerfile.v0", src)
		}
		bo.buildArgs = append(bo.buildArgs, "BUILDKIT_SYNTAX="+src)
		return nil
	case "":
		return errors.New("--frontend is required: imgbuild builds Dockerfiles (--frontend dockerfile.v0); LLB on standard input is not supported")
	default:
		return fmt.Errorf("--frontend %q: imgbuild runs dockerfile.v0, and gateway.v0 with --opt source=IMAGE", bc.frontend)
	}
}

// buildctlIgnoredOutputKeys are image exporter options about a daemon's
// image store, which imgbuild does not have.
var buildctlIgnoredOutputKeys = []string{"unpack", "store", "name-canonical", "dangling-name-prefix"}

// outputToBuild translates one --output. buildctl's exporter options that
// imgbuild build has as flags (compression=, compression-level=,
// force-compression=, registry.insecure=) become those flags; a tarball
// type without dest= goes to standard output, as in buildctl. The rest is
// checked by imgbuild build's own parser, with messages naming s.
func (bc *buildctlOptions) outputToBuild(bo *buildOptions, s string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("--output %q: %s", s, fmt.Sprintf(format, a...))
	}
	fields, err := csvvalue.Fields(s, nil)
	if err != nil {
		return bad("%v", err)
	}
	typ, tar, hasDest := "", true, false
	var names []string
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToLower(k) {
		case "type":
			typ = v
		case "dest":
			hasDest = true
		case "tar":
			if b, err := strconv.ParseBool(v); err == nil {
				tar = b
			}
		case "name":
			names = strings.Split(v, ",")
		}
	}
	if typ == "" {
		// buildctl has no buildx shorthands ("-o DIR", "-o -").
		return bad("missing type= (want image, registry, oci, docker, tar or local)")
	}
	var kept []string
	var comp builder.Compression
	compSet := false
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			kept = append(kept, f)
			continue
		}
		switch strings.ToLower(k) {
		case "compression":
			comp.Type, compSet = v, true
		case "compression-level":
			n, err := strconv.Atoi(v)
			if err != nil {
				return bad("compression-level=%s: want an integer", v)
			}
			comp.Level, compSet = &n, true
		case "force-compression":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("force-compression=%s: want true or false", v)
			}
			comp.Force, compSet = b, true
		case "oci-mediatypes":
			if b, err := strconv.ParseBool(v); err != nil || !b {
				return bad("oci-mediatypes=%s: imgbuild writes OCI media types (type=docker,dest=FILE has Docker's)", v)
			}
		case "registry.insecure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("registry.insecure=%s: want true or false", v)
			}
			if !b {
				continue
			}
			for _, n := range names {
				ref, err := registry.ParseReference(n, nil)
				if err != nil {
					return bad("name=%q: %v", n, err)
				}
				if h := ref.Context().RegistryStr(); !slices.Contains(bo.reg.insecure, h) {
					bo.reg.insecure = append(bo.reg.insecure, h)
				}
			}
		default:
			if slices.Contains(buildctlIgnoredOutputKeys, strings.ToLower(k)) {
				bc.notes = append(bc.notes, fmt.Sprintf("--output %q: ignoring %s=: there is no daemon image store", s, k))
				continue
			}
			kept = append(kept, f)
		}
	}
	if compSet {
		if err := comp.Validate(); err != nil {
			return bad("%v", err)
		}
		prev := builder.Compression{Type: bo.compression.typ, Level: bo.compression.level.v, Force: bo.compression.force}
		if bc.compressionFrom != "" && !sameCompression(prev, comp) {
			return bad("compression differs from --output %q's: a build's layers are compressed one way", bc.compressionFrom)
		}
		bc.compressionFrom = s
		bo.compression.typ, bo.compression.level.v, bo.compression.force = comp.Type, comp.Level, comp.Force
	}
	if !hasDest && (typ == "tar" || (typ == "oci" || typ == "docker") && tar) {
		kept = append(kept, "dest=-")
	}
	if typ == "image" && !hasPush(fields) {
		bc.notes = append(bc.notes, fmt.Sprintf("--output %q: without push=true the image stays in imgbuild's state dir (there is no daemon image store); add push=true to push it", s))
	}
	v, err := csvJoin(kept)
	if err != nil {
		return bad("%v", err)
	}
	// Checked now, so that the error names the value as given.
	out, err := parseOutputAs(v, s, bo.reg.insecure)
	if err != nil {
		return err
	}
	if err := out.checkDest(); err != nil {
		return err
	}
	if bo.outputSpecs == nil {
		bo.outputSpecs = map[string]string{}
	}
	bo.outputSpecs[v] = s
	bo.outputs = append(bo.outputs, v)
	return nil
}

func sameCompression(a, b builder.Compression) bool {
	levels := a.Level == nil && b.Level == nil || a.Level != nil && b.Level != nil && *a.Level == *b.Level
	return a.Type == b.Type && a.Force == b.Force && levels
}

func hasPush(fields []string) bool {
	for _, f := range fields {
		if k, v, _ := strings.Cut(f, "="); strings.EqualFold(k, "push") {
			b, err := strconv.ParseBool(v)
			return err == nil && b
		}
	}
	return false
}

// csvJoin is the inverse of csvvalue.Fields: fields holding a comma or a
// quote are quoted.
func csvJoin(fields []string) (string, error) {
	var sb strings.Builder
	w := csv.NewWriter(&sb)
	if err := w.Write(fields); err != nil {
		return "", err
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return "", err
	}
	return strings.TrimSuffix(sb.String(), "\n"), nil
}

// cacheToBuild parses --import-cache and --export-cache with buildctl's
// parsers and hands them to imgbuild build's --cache-from and --cache-to,
// whose checks they pass here so that an error names buildctl's flag.
func (bc *buildctlOptions) cacheToBuild(bo *buildOptions) error {
	for _, c := range []struct {
		flag   string
		values []string
		parse  func([]string) ([]builder.CacheEntry, error)
		export bool
		dst    *[]string
	}{
		{"--import-cache", bc.importCache, builder.ParseCacheImports, false, &bo.cache.from},
		{"--export-cache", bc.exportCache, builder.ParseCacheExports, true, &bo.cache.to},
	} {
		for _, s := range c.values {
			entries, err := c.parse([]string{s})
			if err != nil {
				return fmt.Errorf("%s %w", c.flag, err)
			}
			for _, e := range entries {
				fields := []string{"type=" + e.Type}
				keys := make([]string, 0, len(e.Attrs))
				for k := range e.Attrs {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fields = append(fields, k+"="+e.Attrs[k])
				}
				v, err := csvJoin(fields)
				if err != nil {
					return fmt.Errorf("%s %q: %w", c.flag, s, err)
				}
				if _, err := parseCacheEntry(v, c.export); err != nil {
					return fmt.Errorf("%s %q: %w", c.flag, s, err)
				}
				*c.dst = append(*c.dst, v)
			}
		}
	}
	return nil
}

// warnNotes prints what toBuild accepted without effect.
func (bc *buildctlOptions) warnNotes(log logrus.FieldLogger) {
	for _, n := range bc.notes {
		log.Warn(n)
	}
}
