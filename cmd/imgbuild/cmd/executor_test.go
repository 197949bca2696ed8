package cmd

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/builder"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

// TestExecutorFlagTranslation maps real kaniko command lines (from kaniko's
// README and common CI templates) onto imgbuild build's options.
func TestExecutorFlagTranslation(t *testing.T) {
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ctxDir, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "docker", "Dockerfile.prod"), []byte("ARG BASE=internal.example:5000/base:1\nFROM ${BASE} AS build\nFROM --platform=linux/amd64 mirror.example/tools:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	three := 3
	dfServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app/Dockerfile" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "FROM scratch\nLABEL from=url\n")
	}))
	defer dfServer.Close()
	type want struct {
		Tags      []string
		Push      bool
		File      string
		BuildArgs []string
		Target    string
		Labels    []string
		Platform  string
		Outputs   []string
		CacheFrom []string
		CacheTo   []string
		Insecure  []string
		SkipTLS   []string
		Mirrors   []string
		Maps      []string
		Compress  builder.Compression
		// --cache-mounts-from and --cache-mounts-to.
		MountsFrom, MountsTo string
		// kaniko's flags that build has none for.
		Dockerfile      string // downloaded
		CheckPush       []string
		PushRetry       int
		PullRetry       *int
		IgnoreImmutable bool
		Protect         []string
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want want
	}{{
		name: "kaniko README",
		args: []string{"--dockerfile=Dockerfile", "--context=dir://" + ctxDir, "--destination=gcr.io/my-project/app:v1"},
		want: want{Tags: []string{"gcr.io/my-project/app:v1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"), CheckPush: []string{"gcr.io/my-project/app:v1"}},
	}, {
		name: "GitLab CI template",
		args: []string{"--context", ctxDir, "--dockerfile", ctxDir + "/docker/Dockerfile.prod",
			"--destination", "registry.gitlab.com/g/p:abc123", "--destination", "registry.gitlab.com/g/p:latest",
			"--build-arg", "VERSION=1.2", "--label", "org.opencontainers.image.revision=abc123", "--cache=true"},
		want: want{Tags: []string{"registry.gitlab.com/g/p:abc123", "registry.gitlab.com/g/p:latest"}, Push: true,
			File: ctxDir + "/docker/Dockerfile.prod", BuildArgs: []string{"VERSION=1.2"}, Labels: []string{"org.opencontainers.image.revision=abc123"},
			CacheFrom: []string{"type=registry,ref=registry.gitlab.com/g/p/cache:buildcache"},
			CacheTo:   []string{"type=registry,ref=registry.gitlab.com/g/p/cache:buildcache,mode=max"},
			CheckPush: []string{"registry.gitlab.com/g/p:abc123", "registry.gitlab.com/g/p:latest"}},
	}, {
		name: "explicit cache repo",
		args: []string{"--context", ctxDir, "-d", "123456789.dkr.ecr.eu-west-1.amazonaws.com/app:1", "--cache", "--cache-repo", "123456789.dkr.ecr.eu-west-1.amazonaws.com/app-cache", "--cache-ttl", "24h"},
		want: want{Tags: []string{"123456789.dkr.ecr.eu-west-1.amazonaws.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			CacheFrom: []string{"type=registry,ref=123456789.dkr.ecr.eu-west-1.amazonaws.com/app-cache:buildcache"},
			CacheTo:   []string{"type=registry,ref=123456789.dkr.ecr.eu-west-1.amazonaws.com/app-cache:buildcache,mode=max"},
			CheckPush: []string{"123456789.dkr.ecr.eu-west-1.amazonaws.com/app:1"}},
	}, {
		name: "cache mounts repo",
		args: []string{"--context", ctxDir, "-d", "reg.example/app:1", "--cache-mounts-repo", "reg.example/app-mounts"},
		want: want{Tags: []string{"reg.example/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			MountsFrom: "type=registry,ref=reg.example/app-mounts:cachemounts", MountsTo: "type=registry,ref=reg.example/app-mounts:cachemounts", CheckPush: []string{"reg.example/app:1"}},
	}, {
		name: "cache mounts repo with a tag",
		args: []string{"--context", ctxDir, "-d", "reg.example/app:1", "--cache-mounts-repo", "reg.example/app-mounts:main"},
		want: want{Tags: []string{"reg.example/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			MountsFrom: "type=registry,ref=reg.example/app-mounts:main", MountsTo: "type=registry,ref=reg.example/app-mounts:main", CheckPush: []string{"reg.example/app:1"}},
	}, {
		name: "cache mounts repo in a directory",
		args: []string{"--context", ctxDir, "-d", "reg.example/app:1", "--cache-mounts-repo", "oci:/cache/mounts"},
		want: want{Tags: []string{"reg.example/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			MountsFrom: "type=local,src=/cache/mounts", MountsTo: "type=local,dest=/cache/mounts", CheckPush: []string{"reg.example/app:1"}},
	}, {
		name: "no push with tarball and layout, Dockerfile relative to context",
		args: []string{"-c", ctxDir, "-f", "docker/Dockerfile.prod", "--no-push", "--tar-path", "/out/image.tar",
			"--oci-layout-path", "/out/layout", "--target", "prod", "--custom-platform", "linux/arm64", "--snapshot-mode=redo", "--use-new-run"},
		want: want{File: filepath.Join(ctxDir, "docker/Dockerfile.prod"), Target: "prod", Platform: "linux/arm64",
			Outputs: []string{"type=docker,dest=/out/image.tar", "type=oci,tar=false,dest=/out/layout"}},
	}, {
		name: "KANIKO_NO_PUSH and a bare build arg",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--build-arg", "FROM_ENV"},
		env:  map[string]string{"KANIKO_NO_PUSH": "true"},
		want: want{Tags: []string{"example.com/app:1"}, File: filepath.Join(ctxDir, "Dockerfile"), BuildArgs: []string{"FROM_ENV"}},
	}, {
		name: "insecure registries, reproducible, mirror from the environment",
		args: []string{"-c", ctxDir, "-f", "docker/Dockerfile.prod", "-d", "plain.example:5000/app:1", "--insecure", "--insecure-pull",
			"--skip-tls-verify-pull", "--reproducible", "--push-retry", "3"},
		env: map[string]string{"KANIKO_REGISTRY_MIRROR": "mirror.gcr.io"},
		want: want{Tags: []string{"plain.example:5000/app:1"}, Push: true, File: filepath.Join(ctxDir, "docker/Dockerfile.prod"),
			BuildArgs: []string{"SOURCE_DATE_EPOCH=0"},
			Insecure:  []string{"plain.example:5000", "internal.example:5000", "mirror.example"},
			SkipTLS:   []string{"internal.example:5000", "mirror.example"},
			Mirrors:   []string{"mirror.gcr.io"}, CheckPush: []string{"plain.example:5000/app:1"}, PushRetry: 3},
	}, {
		name: "zstd at a level",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--compression", "zstd", "--compression-level", "3"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			Compress: builder.Compression{Type: "zstd", Level: &three}, CheckPush: []string{"example.com/app:1"}},
	}, {
		name: "gzip, level 0 and below is gzip's default as in kaniko",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--compression=gzip", "--compression-level=0"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			Compress: builder.Compression{Type: "gzip"}, CheckPush: []string{"example.com/app:1"}},
	}, {
		name: "cache read but not pushed",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--cache", "--no-push-cache"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			CacheFrom: []string{"type=registry,ref=example.com/app/cache:buildcache"}, CheckPush: []string{"example.com/app:1"}},
	}, {
		name: "no push: the cache repository is checked, as in kaniko",
		args: []string{"-c", ctxDir, "--no-push", "--cache", "--cache-repo", "example.com/cache"},
		want: want{File: filepath.Join(ctxDir, "Dockerfile"),
			CacheFrom: []string{"type=registry,ref=example.com/cache:buildcache"}, CacheTo: []string{"type=registry,ref=example.com/cache:buildcache,mode=max"},
			CheckPush: []string{"example.com/cache:buildcache"}},
	}, {
		name: "no push, no push cache: nothing to check",
		args: []string{"-c", ctxDir, "--no-push", "--cache", "--cache-repo", "example.com/cache", "--no-push-cache"},
		want: want{File: filepath.Join(ctxDir, "Dockerfile"), CacheFrom: []string{"type=registry,ref=example.com/cache:buildcache"}},
	}, {
		name: "no push to a local cache: nothing to check",
		args: []string{"-c", ctxDir, "--no-push", "--cache", "--cache-repo", "oci:/cache"},
		want: want{File: filepath.Join(ctxDir, "Dockerfile"), CacheFrom: []string{"type=local,src=/cache"}, CacheTo: []string{"type=local,dest=/cache,mode=max"}},
	}, {
		name: "permission check skipped",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--skip-push-permission-check"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile")},
	}, {
		name: "retries, immutable tags, ignored paths",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--push-retry=5", "--image-download-retry", "0",
			"--push-ignore-immutable-tag-errors", "--ignore-path", "/var/mail", "--ignore-path=/opt/tools", "--cache-ttl", "6h"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"), CheckPush: []string{"example.com/app:1"},
			PushRetry: 5, PullRetry: new(int), IgnoreImmutable: true, Protect: []string{"/var/mail", "/opt/tools"}},
	}, {
		name: "KANIKO_REGISTRY_MAP adds to --registry-map",
		args: []string{"-c", ctxDir, "--no-push", "--registry-map", "quay.io=quay-mirror.example"},
		env:  map[string]string{"KANIKO_REGISTRY_MAP": "index.docker.io=hub-mirror.example;gcr.io=gcr-mirror.example"},
		want: want{File: filepath.Join(ctxDir, "Dockerfile"), Maps: []string{"quay.io=quay-mirror.example", "index.docker.io=hub-mirror.example;gcr.io=gcr-mirror.example"}},
	}, {
		name: "Dockerfile from a URL",
		args: []string{"-c", ctxDir, "--no-push", "-f", dfServer.URL + "/app/Dockerfile"},
		want: want{File: dfServer.URL + "/app/Dockerfile", Dockerfile: "FROM scratch\nLABEL from=url\n"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ko, bo := &kanikoOptions{}, &buildOptions{}
			cmd := executorCmd(&rootOptions{}, ko, bo)
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			dir, cleanup, err := ko.resolveContext(t.Context(), nil, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if err := ko.toBuild(t.Context(), cmd.Flags(), bo, dir, lookup); err != nil {
				t.Fatal(err)
			}
			got := want{Tags: bo.tags, Push: bo.push, File: bo.file, BuildArgs: bo.buildArgs, Target: bo.target,
				Labels: bo.labels, Platform: bo.platform, Outputs: bo.outputs, CacheFrom: bo.cache.from, CacheTo: bo.cache.to,
				Insecure: bo.reg.insecure, SkipTLS: bo.reg.skipTLSVerify, Mirrors: bo.reg.mirrors, Maps: bo.reg.maps,
				Compress:   builder.Compression{Type: bo.compression.typ, Level: bo.compression.level.v, Force: bo.compression.force},
				Dockerfile: string(bo.dockerfileData), CheckPush: bo.checkPush, PushRetry: bo.reg.pushRetry, PullRetry: bo.reg.pullRetry,
				IgnoreImmutable: bo.ignoreImmutable, Protect: bo.protect,
				MountsFrom: bo.cache.mountsFrom, MountsTo: bo.cache.mountsTo}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
		})
	}
}

func TestExecutorErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	missingURL := srv.URL + "/Dockerfile"
	withDockerfile := t.TempDir()
	if err := os.WriteFile(filepath.Join(withDockerfile, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"executor", "--context", "/nonexistent-ctx", "--no-push"}, "/nonexistent-ctx"},
		{[]string{"executor", "--context", "s3://bucket/ctx.tar.gz", "--no-push"}, "s3:// contexts are not supported"},
		{[]string{"executor", "--context", t.TempDir()}, "--destination is required"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--cache-mounts-repo", "r.example/m", "--cache-mounts-to", "/d"}, "--cache-mounts-repo sets --cache-mounts-from and --cache-mounts-to"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--cache-mounts-repo", "R.example/Bad"}, `--cache-mounts-repo "R.example/Bad"`},
		{[]string{"executor", "--context", t.TempDir(), "--no-push", "--dockerfile", "missing.Dockerfile"}, `dockerfile "missing.Dockerfile" not found`},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--compression", "uncompressed"}, `invalid argument "uncompressed" for "--compression" flag: want gzip or zstd`},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--compression-level", "fast"}, `invalid argument "fast" for "--compression-level" flag`},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--compression-level", "10"}, "--compression-level: invalid compression level 10 for gzip (want 0 to 9)"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--dockerfile", missingURL}, "--dockerfile: downloading dockerfile " + missingURL + ": the server answered 404 Not Found"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--image-name-with-digest-file", "/tmp/x"}, "--image-name-with-digest-file needs a --destination"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--image-name-tag-with-digest-file", "/tmp/x"}, "--image-name-tag-with-digest-file needs a --destination"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--push-retry", "-1"}, "--push-retry -1: want 0 or more"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--image-download-retry", "-2"}, "--image-download-retry -2: want 0 or more"},
		{[]string{"executor", "--context", withDockerfile, "--no-push", "--cache-ttl", "two weeks"}, `invalid argument "two weeks" for "--cache-ttl" flag`},
	} {
		r := run(t, "", tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// TestExecutorIgnoredFlagValues parses kaniko command lines that set the
// accepted no-op flags in each form kaniko takes: "--flag value",
// "--flag=value", and a bare "--flag" for kaniko's boolean ones.
func TestExecutorIgnoredFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want map[string]string
	}{
		{[]string{"--snapshot-mode", "redo"}, map[string]string{"snapshot-mode": "redo"}},
		{[]string{"--snapshot-mode=time"}, map[string]string{"snapshot-mode": "time"}},
		{[]string{"--snapshotMode", "redo"}, map[string]string{"snapshotMode": "redo"}},
		{[]string{"--cache-dir", "/cache"}, map[string]string{"cache-dir": "/cache"}},
		{[]string{"--kaniko-dir", "/k", "--image-fs-extract-retry", "3"}, map[string]string{"kaniko-dir": "/k", "image-fs-extract-retry": "3"}},
		{[]string{"--use-new-run", "--single-snapshot", "--cleanup"}, map[string]string{"use-new-run": "true", "single-snapshot": "true", "cleanup": "true"}},
		{[]string{"--compressed-caching=false", "--ignore-var-run"}, map[string]string{"compressed-caching": "false", "ignore-var-run": "true"}},
		{[]string{"--force", "--cache-run-layers=false", "--skip-unused-stages=true"}, map[string]string{"force": "true", "cache-run-layers": "false", "skip-unused-stages": "true"}},
	} {
		ko, bo := &kanikoOptions{}, &buildOptions{}
		cmd := executorCmd(&rootOptions{}, ko, bo)
		cmd.PersistentPreRunE = nil
		cmd.RunE = func(*cobra.Command, []string) error { return nil }
		cmd.SetArgs(tc.args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		for name, want := range tc.want {
			if got := *ko.ignored[name]; got != want {
				t.Errorf("%v: --%s = %q, want %q", tc.args, name, got, want)
			}
		}
	}
}

func TestExecutorKanikoRegistryMapEnv(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KANIKO_REGISTRY_MAP", "index.docker.io")
	r := run(t, "", "executor", "--context", dir, "--no-push")
	if want := `KANIKO_REGISTRY_MAP="index.docker.io": want ORIG=NEW[;ORIG=NEW...]`; r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want failure mentioning %q", r.code, r.stderr, want)
	}
}

// TestExecutorVersion runs kaniko's one subcommand.
func TestExecutorVersion(t *testing.T) {
	r := run(t, "", "executor", "version")
	want := run(t, "", "version")
	if r.code != 0 || r.stdout != want.stdout || !strings.HasPrefix(r.stdout, "imgbuild ") {
		t.Errorf("executor version: exit %d, %q; want %q", r.code, r.stdout, want.stdout)
	}
}

// TestExecutorNoEffectWarnings checks the warnings for kaniko flags that are
// taken but do nothing in this run.
func TestExecutorNoEffectWarnings(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		executor sandbox.Executor
		want     []string // substrings, one per warning line; none: no warning
	}{
		{[]string{"--cache-ttl", "6h"}, sandbox.Runc, []string{"--cache-ttl has no effect"}},
		{[]string{"--ignore-path", "/var/mail"}, sandbox.Runc, []string{"--ignore-path has no effect with executor runc"}},
		{[]string{"--ignore-path", "/var/mail"}, sandbox.RuncNoSandbox, []string{"--ignore-path has no effect with executor runc-no-sandbox"}},
		{[]string{"--ignore-path", "/var/mail"}, sandbox.InPlace, nil},
		{nil, sandbox.Runc, nil},
	} {
		ko, bo := &kanikoOptions{}, &buildOptions{}
		cmd := executorCmd(&rootOptions{}, ko, bo)
		if err := cmd.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var buf strings.Builder
		log := logrus.New()
		log.SetOutput(&buf)
		ko.warnNoEffect(cmd, log, tc.executor)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if buf.Len() == 0 {
			lines = nil
		}
		if len(lines) != len(tc.want) {
			t.Errorf("%v on %s: warnings %q, want %q", tc.args, tc.executor, lines, tc.want)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("%v on %s: warning %q lacks %q", tc.args, tc.executor, lines[i], w)
			}
		}
	}
}
