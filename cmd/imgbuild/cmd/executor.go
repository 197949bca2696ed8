package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/kaniko"
	"github.com/imgbuild/imgbuild/pkg/registry"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// kanikoOptions are kaniko's executor flags, with kaniko's names, short
// forms and defaults. They are translated onto buildOptions in one place,
// toBuild, so that `imgbuild executor` and `imgbuild build` share every
// behaviour after flag parsing.
type kanikoOptions struct {
	context        string
	contextSubPath string
	dockerfile     string
	destinations   []string
	noPush         bool
	tarPath        string
	ociLayoutPath  string
	buildArgs      []string
	target         string
	labels         []string
	customPlatform string
	verbosity      string
	logFormat      string
	logTimestamp   bool
	secrets        []string
	git            []string
	cache          bool
	cacheRepo      string
	mountsRepo     string
	cacheTTL       time.Duration
	noPushCache    bool
	ignorePaths    []string
	// kaniko's registry switches that are flags of their own here.
	skipPushCheck   bool
	ignoreImmutable bool
	pullRetry       int
	insecurePush    bool
	insecurePull    bool
	skipTLSPush     bool
	skipTLSPull     bool
	reproducible    bool
	pushRetry       int
	compression     kanikoCompression
	compressionLvl  int

	// ignored are kaniko flags that describe kaniko's internals; they are
	// accepted so that existing Job specs keep working.
	ignored map[string]*string
}

// kanikoInternalFlags have no meaning with an embedded BuildKit: BuildKit
// snapshots with overlayfs, caches every step and never unpacks into its
// own root filesystem. kaniko's booleans (def "true" or "false") may be
// given bare; the others take a value, as "--flag value" or "--flag=value".
var kanikoInternalFlags = []struct{ name, def string }{
	{"snapshot-mode", "full"}, {"snapshotMode", "full"}, {"use-new-run", "false"},
	{"single-snapshot", "false"}, {"compressed-caching", "true"}, {"cache-run-layers", "true"},
	{"cache-copy-layers", "false"}, {"ignore-var-run", "true"}, {"whitelist-var-run", "true"},
	{"cleanup", "false"}, {"kaniko-dir", "/kaniko"}, {"force", "false"},
	{"force-build-metadata", "false"}, {"skip-unused-stages", "false"}, {"image-fs-extract-retry", "0"},
	{"cache-dir", "/cache"},
}

func newExecutorCmd(ro *rootOptions) *cobra.Command {
	return executorCmd(ro, &kanikoOptions{}, &buildOptions{})
}

// executorCmd binds the command's flags to ko and bo.
func executorCmd(ro *rootOptions, ko *kanikoOptions, bo *buildOptions) *cobra.Command {
	ko.ignored = map[string]*string{}
	cmd := &cobra.Command{
		Use:   "executor",
		Short: "Build with kaniko's executor flags (drop-in for /kaniko/executor)",
		Long: `Build and push an image with kaniko's flag names and semantics, so that a
kaniko Job spec or CI template works by changing the image. The build runs on
imgbuild's embedded BuildKit; flags that only describe kaniko's internals are
accepted with a warning.`,
		Example: `  imgbuild executor --context dir:///workspace --dockerfile Dockerfile \
    --destination registry.example.com/app:1.0 --cache=true

  tar -czf - . | imgbuild executor --context tar://stdin --destination registry.example.com/app:1.0`,
		Args: cobra.NoArgs,
		// kaniko has its own logging flags; they replace the root's.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			ro.logLevel, ro.logFormat = ko.verbosity, ko.logFormat
			if ro.logFormat == "color" {
				ro.logFormat = "text"
			}
			if err := ro.setupLogging(cmd.ErrOrStderr()); err != nil {
				return err
			}
			if f, ok := ro.log.Formatter.(*logrus.TextFormatter); ok && ko.logTimestamp {
				f.DisableTimestamp = false
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rerun, err := ro.enterSandbox(cmd, &bo.state); rerun || err != nil {
				return err
			}
			ko.warnIgnored(cmd, ro.log)
			ko.warnNoEffect(cmd, ro.log, bo.state.chosen)
			if err := tempDirFallback(bo.state); err != nil {
				return err
			}
			contextDir, cleanup, err := ko.resolveContext(cmd.Context(), cmd.InOrStdin(), os.Getenv)
			if err != nil {
				return err
			}
			defer cleanup()
			if err := ko.toBuild(cmd.Context(), cmd.Flags(), bo, contextDir, os.LookupEnv); err != nil {
				return err
			}
			err = runBuild(cmd, ro, bo, contextDir)
			// kaniko exits with a failed RUN's own exit code.
			var be *builder.BuildError
			if errors.As(err, &be) && be.ExitCode > 0 {
				return &exitError{code: be.ExitCode, err: err}
			}
			return err
		},
	}
	f := cmd.Flags()
	ko.addFlags(f)
	// Flags imgbuild shares with kaniko under the same names.
	bo.state.addRootFlags(f)
	f.StringVar(&bo.progress, "progress", "plain", "progress output: auto, tty, plain, rawjson or quiet")
	bo.state.addExecutorFlag(f)
	bo.reg.addFlags(f)
	bo.cache.addFlags(f)
	bo.limits.addFlags(f)
	bo.digests.addFlags(f)
	// kaniko's --compression takes fewer values than build's.
	registerCompletions(cmd, "progress", "executor")
	// kaniko's only subcommand.
	cmd.AddCommand(newVersionCmd())
	return cmd
}

func (ko *kanikoOptions) addFlags(f *pflag.FlagSet) {
	f.StringVarP(&ko.context, "context", "c", "/workspace/", "build context: dir://PATH, PATH, tar://PATH.tar.gz, tar://stdin or git://HOST/REPO.git[#REF[#COMMIT]]")
	f.StringVar(&ko.contextSubPath, "context-sub-path", "", "sub-directory of the context to build")
	f.StringVarP(&ko.dockerfile, "dockerfile", "f", "Dockerfile", "Dockerfile: absolute, relative to the working directory, or relative to the context")
	f.StringArrayVarP(&ko.destinations, "destination", "d", nil, "image reference to push (repeatable)")
	f.BoolVar(&ko.noPush, "no-push", false, "build without pushing (env KANIKO_NO_PUSH)")
	f.StringVar(&ko.tarPath, "tar-path", "", "also write the image as a docker-archive tarball")
	f.StringVar(&ko.tarPath, "tarPath", "", "deprecated: use --tar-path")
	f.StringVar(&ko.ociLayoutPath, "oci-layout-path", "", "also write the image as an OCI layout directory")
	f.StringArrayVar(&ko.buildArgs, "build-arg", nil, "KEY=VALUE for ARG; a bare KEY takes its value from the environment")
	f.StringVar(&ko.target, "target", "", "stage to build")
	f.StringArrayVar(&ko.labels, "label", nil, "image label KEY=VALUE")
	f.StringVar(&ko.customPlatform, "custom-platform", "", "target platform os/arch[/variant]")
	f.StringVar(&ko.customPlatform, "customPlatform", "", "deprecated: use --custom-platform")
	f.StringVarP(&ko.verbosity, "verbosity", "v", "info", "log level: trace, debug, info, warn, error, fatal, panic")
	f.StringVar(&ko.logFormat, "log-format", "color", "log format: text, color or json")
	f.BoolVar(&ko.logTimestamp, "log-timestamp", false, "timestamps in log lines")
	f.StringArrayVar(&ko.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR")
	f.BoolVar(&ko.insecurePush, "insecure", false, "push to plain-HTTP destination registries")
	f.BoolVar(&ko.insecurePull, "insecure-pull", false, "pull base images from plain-HTTP registries")
	f.BoolVar(&ko.skipTLSPush, "skip-tls-verify", false, "push without verifying destination registries' TLS certificates")
	f.BoolVar(&ko.skipTLSPull, "skip-tls-verify-pull", false, "pull without verifying registries' TLS certificates")
	f.BoolVar(&ko.reproducible, "reproducible", false, "strip timestamps (SOURCE_DATE_EPOCH=0) for reproducible digests")
	f.Var(&ko.compression, "compression", "layer compression: gzip or zstd (default gzip)")
	f.IntVar(&ko.compressionLvl, "compression-level", -1, "compression level: 1 to 9 for gzip, 1 to 22 for zstd; 0 or less is the algorithm's default")
	f.IntVar(&ko.pushRetry, "push-retry", 0, "retries of a push request or blob upload that failed with 408, 429, a 5xx or a reset, from 1 s doubling (0: imgbuild's default, 2 retries)")
	f.BoolVar(&ko.ignoreImmutable, "push-ignore-immutable-tag-errors", false, "a tag the registry refuses as immutable (ECR, Artifact Registry) is a warning, not a failure")
	f.BoolVar(&ko.skipPushCheck, "skip-push-permission-check", false, "do not check before the build that every destination accepts a push")
	f.IntVar(&ko.pullRetry, "image-download-retry", 0, "retries of a base-image or cache pull request that failed with 408, 429, a 5xx or a reset (unset: 3)")
	f.BoolVar(&ko.cache, "cache", false, "use the registry layer cache (--cache-repo, default DESTINATION-REPO/cache)")
	f.StringVar(&ko.cacheRepo, "cache-repo", "", "registry repository for the cache; oci:PATH keeps it in a local directory")
	f.StringVar(&ko.mountsRepo, "cache-mounts-repo", "", `registry repository for the contents of RUN --mount=type=cache mounts, read at start and written at the end (tag cachemounts unless REPO has one); oci:PATH keeps them in a local directory`)
	f.BoolVar(&ko.noPushCache, "no-push-cache", false, "read the --cache but do not push it")
	f.DurationVar(&ko.cacheTTL, "cache-ttl", 336*time.Hour, "no effect: BuildKit's registry cache is one manifest, replaced on every export, with no per-layer age")
	f.StringArrayVar(&ko.ignorePaths, "ignore-path", nil, "path of the build container that RUN steps of the in-place executor leave alone and that stays out of the image (repeatable; no effect with the other executors)")
	f.StringArrayVar(&ko.git, "git", nil, "git context options: branch=, single-branch=, recurse-submodules=, insecure-skip-tls=")
	for _, fl := range kanikoInternalFlags {
		v := new(string)
		ko.ignored[fl.name] = v
		f.StringVar(v, fl.name, fl.def, "kaniko internal; accepted and ignored")
		if fl.def == "true" || fl.def == "false" {
			f.Lookup(fl.name).NoOptDefVal = "true"
		}
		_ = f.MarkHidden(fl.name)
	}
	for _, d := range []string{"tarPath", "customPlatform", "snapshotMode"} {
		_ = f.MarkHidden(d)
	}
}

// warnIgnored prints one line naming the kaniko-internal flags that were set.
func (ko *kanikoOptions) warnIgnored(cmd *cobra.Command, log logrus.FieldLogger) {
	var set []string
	for name := range ko.ignored {
		if cmd.Flags().Changed(name) {
			set = append(set, "--"+name)
		}
	}
	if len(set) > 0 {
		sort.Strings(set)
		log.Warnf("ignoring kaniko flags that do not apply to imgbuild's BuildKit solver: %s", strings.Join(set, ", "))
	}
}

// warnNoEffect says which of kaniko's flags that are taken do nothing in
// this run.
func (ko *kanikoOptions) warnNoEffect(cmd *cobra.Command, log logrus.FieldLogger, executor sandbox.Executor) {
	if cmd.Flags().Changed("cache-ttl") {
		log.Warnf("--cache-ttl has no effect: BuildKit's registry cache is one manifest replaced by every export, so there are no cached layers of different ages to expire")
	}
	if len(ko.ignorePaths) > 0 && executor != sandbox.InPlace {
		log.Warnf("--ignore-path has no effect with executor %s: RUN steps run in a root filesystem of their own, where the build container's paths never are; only the in-place executor rewrites the container's /", executor)
	}
}

// toBuild translates kaniko's options onto imgbuild build's; f tells which
// flags were given. A --dockerfile URL is downloaded here.
func (ko *kanikoOptions) toBuild(ctx context.Context, f *pflag.FlagSet, bo *buildOptions, contextDir string, lookupEnv func(string) (string, bool)) error {
	bo.tags = ko.destinations
	bo.buildArgs = ko.buildArgs
	bo.target = ko.target
	bo.labels = ko.labels
	bo.platform = ko.customPlatform
	bo.secrets = ko.secrets
	if bo.progress == "" {
		bo.progress = "plain"
	}

	noPush := ko.noPush
	if v, ok := lookupEnv("KANIKO_NO_PUSH"); ok && !noPush {
		noPush = v == "true" || v == "1"
	}
	if !noPush {
		if len(ko.destinations) == 0 {
			return errors.New("--destination is required unless --no-push is set")
		}
		bo.push = true
	}
	// As kaniko: these files name the image by its destinations.
	if len(ko.destinations) == 0 {
		for flag, path := range map[string]string{"image-name-with-digest-file": bo.digests.NameDigest, "image-name-tag-with-digest-file": bo.digests.NameTagDigest} {
			if path != "" {
				return fmt.Errorf("--%s needs a --destination: the file names the image by its destinations (use --digest-file for the digest alone)", flag)
			}
		}
	}

	var dfData []byte
	if kaniko.IsDockerfileURL(ko.dockerfile) {
		b, err := kaniko.FetchDockerfile(ctx, ko.dockerfile, nil)
		if err != nil {
			return fmt.Errorf("--dockerfile: %w", err)
		}
		bo.file, bo.dockerfileData, dfData = ko.dockerfile, b, b
	} else {
		df, err := resolveDockerfile(ko.dockerfile, contextDir)
		if err != nil {
			return err
		}
		bo.file = df
	}

	if v, ok := lookupEnv("BUILDER_OUTPUT"); ok {
		bo.builderOutput = v
	}
	if ko.reproducible {
		bo.buildArgs = append(bo.buildArgs, "SOURCE_DATE_EPOCH=0")
	}
	ko.compressionToBuild(bo)
	if v, ok := lookupEnv("KANIKO_REGISTRY_MIRROR"); ok && v != "" && len(bo.reg.mirrors) == 0 {
		bo.reg.mirrors = strings.Split(v, ";")
	}
	// kaniko adds KANIKO_REGISTRY_MAP to --registry-map's values.
	if v, ok := lookupEnv("KANIKO_REGISTRY_MAP"); ok && v != "" {
		for _, pair := range strings.Split(v, ";") {
			if orig, mirror, ok := strings.Cut(pair, "="); !ok || orig == "" || mirror == "" {
				return fmt.Errorf("KANIKO_REGISTRY_MAP=%q: want ORIG=NEW[;ORIG=NEW...]", v)
			}
		}
		bo.reg.maps = append(bo.reg.maps, v)
	}
	if ko.pushRetry < 0 {
		return fmt.Errorf("--push-retry %d: want 0 or more", ko.pushRetry)
	}
	bo.reg.pushRetry = ko.pushRetry
	if f.Changed("image-download-retry") {
		if ko.pullRetry < 0 {
			return fmt.Errorf("--image-download-retry %d: want 0 or more", ko.pullRetry)
		}
		n := ko.pullRetry
		bo.reg.pullRetry = &n
	}
	bo.ignoreImmutable = ko.ignoreImmutable
	bo.protect = ko.ignorePaths
	// kaniko's registry-wide switches name no hosts: apply them to the
	// destinations' registries, and for pulls to the base images'.
	var pushHosts []string
	for _, d := range ko.destinations {
		if ref, err := registry.ParseReference(d, nil); err == nil {
			pushHosts = append(pushHosts, ref.Context().RegistryStr())
		}
	}
	var pullHosts []string
	if ko.insecurePull || ko.skipTLSPull {
		if dfData == nil {
			dfData, _ = os.ReadFile(bo.file) // unreadable: the build says so
		}
		pullHosts = builder.BaseRegistries(dfData, ko.buildArgs, lookupEnv)
	}
	if ko.insecurePush {
		bo.reg.insecure = append(bo.reg.insecure, pushHosts...)
	}
	if ko.insecurePull {
		bo.reg.insecure = append(bo.reg.insecure, pullHosts...)
	}
	if ko.skipTLSPush {
		bo.reg.skipTLSVerify = append(bo.reg.skipTLSVerify, pushHosts...)
	}
	if ko.skipTLSPull {
		bo.reg.skipTLSVerify = append(bo.reg.skipTLSVerify, pullHosts...)
	}
	var cacheRepo string
	if ko.cache {
		var err error
		if cacheRepo, err = ko.cacheToBuild(bo); err != nil {
			return err
		}
	}
	if err := ko.mountsToBuild(bo); err != nil {
		return err
	}
	// kaniko checks before the build that what will be pushed can be:
	// the destinations, or with --no-push the cache.
	if !ko.skipPushCheck {
		switch {
		case !noPush:
			bo.checkPush = ko.destinations
		case cacheRepo != "" && !ko.noPushCache:
			bo.checkPush = []string{cacheRepo}
		}
	}
	if ko.tarPath != "" {
		bo.outputs = append(bo.outputs, "type=docker,dest="+ko.tarPath)
	}
	if ko.ociLayoutPath != "" {
		bo.outputs = append(bo.outputs, "type=oci,tar=false,dest="+ko.ociLayoutPath)
	}
	return nil
}

// kanikoCompression is kaniko's --compression: gzip or zstd, checked as the
// flag is parsed, as kaniko does.
type kanikoCompression string

// Set implements pflag.Value.
func (c *kanikoCompression) Set(s string) error {
	if s != builder.Gzip && s != builder.Zstd {
		return errors.New("want gzip or zstd")
	}
	*c = kanikoCompression(s)
	return nil
}

// String implements pflag.Value.
func (c *kanikoCompression) String() string { return string(*c) }

// Type implements pflag.Value.
func (c *kanikoCompression) Type() string { return "string" }

// compressionToBuild maps kaniko's --compression and --compression-level;
// kaniko applies a level only when it is above 0.
func (ko *kanikoOptions) compressionToBuild(bo *buildOptions) {
	bo.compression.typ = string(ko.compression)
	if ko.compressionLvl > 0 {
		l := ko.compressionLvl
		bo.compression.level.v = &l
	}
}

// cacheTag is the tag of the one BuildKit cache manifest kept in the cache
// repository (kaniko keeps one image per layer instead; the formats differ,
// so a kaniko cache is not reused, only replaced).
const cacheTag = "buildcache"

// cacheToBuild maps --cache/--cache-repo onto a max-mode registry cache
// (or a local one for kaniko's oci: prefix), imported, and exported unless
// --no-push-cache. It returns the cache's registry reference, "" for a
// local one.
func (ko *kanikoOptions) cacheToBuild(bo *buildOptions) (string, error) {
	repo := ko.cacheRepo
	if repo == "" {
		if len(ko.destinations) == 0 {
			return "", errors.New("--cache needs --cache-repo or a --destination to infer it from")
		}
		ref, err := registry.ParseReference(ko.destinations[0], bo.reg.insecure)
		if err != nil {
			return "", fmt.Errorf("--destination: %w", err)
		}
		repo = ref.Context().Name() + "/cache"
	}
	if dir, ok := strings.CutPrefix(repo, "oci:"); ok {
		bo.cache.from = append(bo.cache.from, "type=local,src="+dir)
		if !ko.noPushCache {
			bo.cache.to = append(bo.cache.to, "type=local,dest="+dir+",mode=max")
		}
		return "", nil
	}
	ref := repo + ":" + cacheTag
	bo.cache.from = append(bo.cache.from, "type=registry,ref="+ref)
	if !ko.noPushCache {
		bo.cache.to = append(bo.cache.to, "type=registry,ref="+ref+",mode=max")
	}
	return ref, nil
}

// cacheMountsTag is the tag of the cache mounts artifact in
// --cache-mounts-repo.
const cacheMountsTag = "cachemounts"

// mountsToBuild maps --cache-mounts-repo, imgbuild's flag in the style of
// kaniko's --cache-repo (kaniko has no cache mount carrying), onto
// --cache-mounts-from and --cache-mounts-to.
func (ko *kanikoOptions) mountsToBuild(bo *buildOptions) error {
	repo := ko.mountsRepo
	if repo == "" {
		return nil
	}
	if bo.cache.mountsFrom != "" || bo.cache.mountsTo != "" {
		return errors.New("--cache-mounts-repo sets --cache-mounts-from and --cache-mounts-to; give either")
	}
	if dir, ok := strings.CutPrefix(repo, "oci:"); ok {
		bo.cache.mountsFrom, bo.cache.mountsTo = "type=local,src="+dir, "type=local,dest="+dir
		return nil
	}
	ref := repo
	if _, err := name.NewRepository(repo); err == nil {
		ref = repo + ":" + cacheMountsTag
	} else if _, err := registry.ParseReference(repo, bo.reg.insecure); err != nil {
		return fmt.Errorf("--cache-mounts-repo %q: %w", repo, err)
	}
	bo.cache.mountsFrom, bo.cache.mountsTo = "type=registry,ref="+ref, "type=registry,ref="+ref
	return nil
}

// resolveDockerfile finds the Dockerfile the way kaniko does: an absolute
// path, else relative to the working directory if it exists there, else
// relative to the context.
func resolveDockerfile(df, contextDir string) (string, error) {
	if filepath.IsAbs(df) {
		return df, nil
	}
	if _, err := os.Stat(df); err == nil {
		return filepath.Abs(df)
	}
	inCtx := filepath.Join(contextDir, df)
	if _, err := os.Stat(inCtx); err == nil {
		return inCtx, nil
	}
	return "", fmt.Errorf("dockerfile %q not found in the working directory or the context %s", df, contextDir)
}

// resolveContext turns --context (and --context-sub-path) into a local
// directory; cleanup removes what was fetched.
func (ko *kanikoOptions) resolveContext(ctx context.Context, stdin io.Reader, getenv func(string) string) (string, func(), error) {
	dir, cleanup, err := kaniko.FetchContext(ctx, ko.context, kaniko.ContextOptions{
		SubPath: ko.contextSubPath, Stdin: stdin, Getenv: getenv, Git: ko.git,
	})
	var se *kaniko.SubPathError
	if errors.As(err, &se) {
		return "", cleanup, fmt.Errorf("--context-sub-path %w", err)
	}
	if err != nil {
		return "", cleanup, fmt.Errorf("--context %w", err)
	}
	return dir, cleanup, nil
}

// tempDirFallback points TMPDIR into the state dir when the temp dir does
// not exist: the release image (FROM scratch, like kaniko's) has no /tmp,
// and git and tar contexts are unpacked there before the build starts.
func tempDirFallback(state stateFlags) error {
	if _, err := os.Stat(os.TempDir()); err == nil {
		return nil
	}
	dir, err := state.dir()
	if err != nil {
		return err
	}
	// Not dir.Temp(): the build's start empties that of a crashed run's
	// files, the context among them.
	tmp := filepath.Join(dir.Path(), "context-tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("no %s, and creating a temp dir in the state dir: %w", os.TempDir(), err)
	}
	return os.Setenv("TMPDIR", tmp)
}
