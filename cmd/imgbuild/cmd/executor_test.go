package cmd

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/builder"
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
		Compress  builder.Compression
		// --cache-mounts-from and --cache-mounts-to.
		MountsFrom, MountsTo string
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want want
	}{{
		name: "kaniko README",
		args: []string{"--dockerfile=Dockerfile", "--context=dir://" + ctxDir, "--destination=gcr.io/my-project/app:v1"},
		want: want{Tags: []string{"gcr.io/my-project/app:v1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile")},
	}, {
		name: "GitLab CI template",
		args: []string{"--context", ctxDir, "--dockerfile", ctxDir + "/docker/Dockerfile.prod",
			"--destination", "registry.gitlab.com/g/p:abc123", "--destination", "registry.gitlab.com/g/p:latest",
			"--build-arg", "VERSION=1.2", "--label", "org.opencontainers.image.revision=abc123", "--cache=true"},
		want: want{Tags: []string{"registry.gitlab.com/g/p:abc123", "registry.gitlab.com/g/p:latest"}, Push: true,
			File: ctxDir + "/docker/Dockerfile.prod", BuildArgs: []string{"VERSION=1.2"}, Labels: []string{"org.opencontainers.image.revision=abc123"},
			CacheFrom: []string{"type=registry,ref=registry.gitlab.com/g/p/cache:buildcache"},
			CacheTo:   []string{"type=registry,ref=registry.gitlab.com/g/p/cache:buildcache,mode=max"}},
	}, {
		name: "explicit cache repo",
		args: []string{"--context", ctxDir, "-d", "123456789.dkr.ecr.eu-west-1.amazonaws.com/app:1", "--cache", "--cache-repo", "123456789.dkr.ecr.eu-west-1.amazonaws.com/app-cache", "--cache-ttl", "24h"},
		want: want{Tags: []string{"123456789.dkr.ecr.eu-west-1.amazonaws.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			CacheFrom: []string{"type=registry,ref=123456789.dkr.ecr.eu-west-1.amazonaws.com/app-cache:buildcache"},
			CacheTo:   []string{"type=registry,ref=123456789.dkr.ecr.eu-west-1.amazonaws.com/app-cache:buildcache,mode=max"}},
	}, {
		name: "cache mounts repo",
		args: []string{"--context", ctxDir, "-d", "reg.example/app:1", "--cache-mounts-repo", "reg.example/app-mounts"},
		want: want{Tags: []string{"reg.example/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			MountsFrom: "type=registry,ref=reg.example/app-mounts:cachemounts", MountsTo: "type=registry,ref=reg.example/app-mounts:cachemounts"},
	}, {
		name: "cache mounts repo with a tag",
		args: []string{"--context", ctxDir, "-d", "reg.example/app:1", "--cache-mounts-repo", "reg.example/app-mounts:main"},
		want: want{Tags: []string{"reg.example/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			MountsFrom: "type=registry,ref=reg.example/app-mounts:main", MountsTo: "type=registry,ref=reg.example/app-mounts:main"},
	}, {
		name: "cache mounts repo in a directory",
		args: []string{"--context", ctxDir, "-d", "reg.example/app:1", "--cache-mounts-repo", "oci:/cache/mounts"},
		want: want{Tags: []string{"reg.example/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			MountsFrom: "type=local,src=/cache/mounts", MountsTo: "type=local,dest=/cache/mounts"},
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
			Mirrors:   []string{"mirror.gcr.io"}},
	}, {
		name: "zstd at a level",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--compression", "zstd", "--compression-level", "3"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			Compress: builder.Compression{Type: "zstd", Level: &three}},
	}, {
		name: "gzip, level 0 and below is gzip's default as in kaniko",
		args: []string{"-c", ctxDir, "-d", "example.com/app:1", "--compression=gzip", "--compression-level=0"},
		want: want{Tags: []string{"example.com/app:1"}, Push: true, File: filepath.Join(ctxDir, "Dockerfile"),
			Compress: builder.Compression{Type: "gzip"}},
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
			if err := ko.toBuild(bo, dir, lookup); err != nil {
				t.Fatal(err)
			}
			got := want{Tags: bo.tags, Push: bo.push, File: bo.file, BuildArgs: bo.buildArgs, Target: bo.target,
				Labels: bo.labels, Platform: bo.platform, Outputs: bo.outputs, CacheFrom: bo.cache.from, CacheTo: bo.cache.to,
				Insecure: bo.reg.insecure, SkipTLS: bo.reg.skipTLSVerify, Mirrors: bo.reg.mirrors,
				Compress:   builder.Compression{Type: bo.compression.typ, Level: bo.compression.level.v, Force: bo.compression.force},
				MountsFrom: bo.cache.mountsFrom, MountsTo: bo.cache.mountsTo}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
		})
	}
}

func TestExecutorErrors(t *testing.T) {
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
		{[]string{"--ignore-path", "/var/mail", "--ignore-path=/etc/x"}, map[string]string{"ignore-path": "/etc/x"}},
		{[]string{"--kaniko-dir", "/k", "--image-fs-extract-retry", "3"}, map[string]string{"kaniko-dir": "/k", "image-fs-extract-retry": "3"}},
		{[]string{"--use-new-run", "--single-snapshot", "--cleanup"}, map[string]string{"use-new-run": "true", "single-snapshot": "true", "cleanup": "true"}},
		{[]string{"--compressed-caching=false", "--skip-push-permission-check"}, map[string]string{"compressed-caching": "false", "skip-push-permission-check": "true"}},
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
