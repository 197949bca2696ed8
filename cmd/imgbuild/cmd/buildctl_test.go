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

// parseBuildctl runs a buildctl command line (global flags, then "build"
// and its flags) through the command tree up to the translation.
func parseBuildctl(t *testing.T, args []string) (*buildctlOptions, *buildOptions, error) {
	t.Helper()
	bc, bo := &buildctlOptions{}, &buildOptions{}
	cmd := buildctlCmd(&rootOptions{}, bc, bo)
	cmd.PersistentPreRunE = nil
	build, _, err := cmd.Find([]string{"build"})
	if err != nil {
		t.Fatal(err)
	}
	build.RunE = func(*cobra.Command, []string) error { return bc.toBuild(bo) }
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return bc, bo, cmd.Execute()
}

// buildctlDirs makes a context with a Dockerfile and a dockerfile directory
// with another, and makes the context the working directory, as a
// pipeline's `buildctl build --local context=.` runs.
func buildctlDirs(t *testing.T) (ctxDir, dfDir string) {
	t.Helper()
	ctxDir, dfDir = t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(ctxDir, "Dockerfile"), filepath.Join(dfDir, "Dockerfile.prod")} {
		if err := os.WriteFile(f, []byte("FROM scratch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(ctxDir)
	// buildctl's ParseOpt reads it from the environment.
	t.Setenv("SOURCE_DATE_EPOCH", "")
	os.Unsetenv("SOURCE_DATE_EPOCH")
	t.Setenv("BUILDKIT_HOST", "")
	return ctxDir, dfDir
}

// TestBuildctlFlagTranslation maps buildctl command lines (the seed's
// pipeline line, buildctl's README examples) onto imgbuild build's options.
func TestBuildctlFlagTranslation(t *testing.T) {
	ctxDir, dfDir := buildctlDirs(t)
	t.Setenv("FROM_ENV", "env-value")
	out := t.TempDir()
	three := 3
	type want struct {
		Context      string
		File         string
		BuildArgs    []string
		Target       string
		Labels       []string
		Platform     string
		NoCache      bool
		Outputs      []string
		CacheFrom    []string
		CacheTo      []string
		Secrets      []string
		Progress     string
		MetadataFile string
		Insecure     []string
		Compress     builder.Compression
		Wait         bool
		Notes        []string
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want want
	}{{
		name: "the seed's line",
		args: []string{"build", "--frontend", "dockerfile.v0", "--local", "context=.", "--local", "dockerfile=.",
			"--output", "type=image,name=registry.example.com/app:tag,push=true"},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto", Outputs: []string{"type=image,name=registry.example.com/app:tag,push=true"}},
	}, {
		name: "buildctl README: target, build arg, separate Dockerfile directory",
		args: []string{"build", "--frontend=dockerfile.v0", "--opt", "target=foo", "--opt", "build-arg:foo=bar",
			"--local", "context=" + ctxDir, "--local", "dockerfile=" + dfDir, "--opt", "filename=Dockerfile.prod",
			"--output", "type=image,name=docker.io/username/image,push=true"},
		want: want{Context: ctxDir, File: filepath.Join(dfDir, "Dockerfile.prod"), Target: "foo", BuildArgs: []string{"foo=bar"},
			Progress: "auto", Outputs: []string{"type=image,name=docker.io/username/image,push=true"}},
	}, {
		name: "opts: labels, platform, no-cache, a build arg from the environment, an unset one left out",
		args: []string{"b", "--frontend", "dockerfile.v0", "--local", "context=.", "--opt", "label:org.opencontainers.image.revision=abc",
			"--opt", "platform=linux/arm64", "--opt", "no-cache=", "--opt", "build-arg:FROM_ENV", "--opt", "build-arg:UNSET_IN_ENV",
			"--progress", "plain", "--metadata-file", "meta.json", "--secret", "id=npmrc,src=/run/npmrc", "--secret", "id=tok,env=TOKEN"},
		want: want{Context: ".", File: "Dockerfile", Labels: []string{"org.opencontainers.image.revision=abc"}, Platform: "linux/arm64",
			NoCache: true, BuildArgs: []string{"FROM_ENV=env-value"}, Progress: "plain", MetadataFile: "meta.json",
			Secrets: []string{"id=npmrc,src=/run/npmrc", "id=tok,env=TOKEN"}},
	}, {
		name: "registry cache export and import, buildctl's forms",
		args: []string{"build", "--frontend", "dockerfile.v0", "--local", "context=.",
			"--export-cache", "type=registry,ref=registry.example.com/app:cache,mode=max",
			"--import-cache", "type=registry,ref=registry.example.com/app:cache",
			"--export-cache", "type=local,dest=" + out + "/cache", "--import-cache", "type=local,src=" + out + "/cache",
			"--export-cache", "type=inline", "--import-cache", "registry.example.com/app:legacy"},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto",
			CacheFrom: []string{"type=registry,ref=registry.example.com/app:cache", "type=local,src=" + out + "/cache", "type=registry,ref=registry.example.com/app:legacy"},
			CacheTo:   []string{"type=registry,mode=max,ref=registry.example.com/app:cache", "type=local,dest=" + out + "/cache,mode=min", "type=inline,mode=min"}},
	}, {
		name: "outputs: tarballs without dest go to standard output, exporter options become flags",
		args: []string{"build", "--frontend", "dockerfile.v0", "--local", "context=.",
			"-o", "type=oci", "-o", "type=docker,dest=" + out + "/img.tar", "-o", "type=local,dest=" + out + "/rootfs",
			"-o", "type=oci,tar=false,dest=" + out + "/layout",
			"--output", `type=image,"name=plain.example:5000/app:1,plain.example:5000/app:latest",push=true,registry.insecure=true,compression=zstd,compression-level=3,oci-mediatypes=true,unpack=false`},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto",
			Outputs: []string{"type=oci,dest=-", "type=docker,dest=" + out + "/img.tar", "type=local,dest=" + out + "/rootfs",
				"type=oci,tar=false,dest=" + out + "/layout", `type=image,"name=plain.example:5000/app:1,plain.example:5000/app:latest",push=true`},
			Insecure: []string{"plain.example:5000"}, Compress: builder.Compression{Type: "zstd", Level: &three},
			Notes: []string{`--output "type=image,\"name=plain.example:5000/app:1,plain.example:5000/app:latest\",push=true,registry.insecure=true,compression=zstd,compression-level=3,oci-mediatypes=true,unpack=false": ignoring unpack=: there is no daemon image store`}},
	}, {
		name: "global flags: a daemon address, --wait, --debug",
		args: []string{"--addr", "tcp://buildkitd:1234", "--debug", "--wait", "--tlscacert", "/certs/ca.pem", "build", "--frontend", "dockerfile.v0",
			"--local", "context=.", "--output", "type=image,name=registry.example.com/app:tag", "--trace", "trace.json"},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto", Wait: true, Outputs: []string{"type=image,name=registry.example.com/app:tag"},
			Notes: []string{"there is no daemon: --addr tcp://buildkitd:1234 is ignored, imgbuild builds in this process",
				"there is no daemon to connect to: ignoring --tlscacert", "--trace trace.json: imgbuild writes no trace file",
				`--output "type=image,name=registry.example.com/app:tag": without push=true the image stays in imgbuild's state dir (there is no daemon image store); add push=true to push it`}},
	}, {
		name: "BUILDKIT_HOST is the default --addr",
		args: []string{"build", "--frontend", "dockerfile.v0", "--local", "context=."},
		env:  map[string]string{"BUILDKIT_HOST": "kube-pod://buildkitd"},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto",
			Notes: []string{"there is no daemon: --addr kube-pod://buildkitd is ignored, imgbuild builds in this process"}},
	}, {
		name: "gateway with the Dockerfile frontend image runs the built-in one",
		args: []string{"build", "--frontend", "gateway.v0", "--opt", "source=docker/dockerfile:1.7", "--local", "context=."},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto"},
	}, {
		name: "gateway with another frontend image, allowed",
		args: []string{"build", "--frontend", "gateway.v0", "--opt", "source=example.com/frontend:1", "--local", "context=.", "--allow-external-frontend"},
		want: want{Context: ".", File: "Dockerfile", Progress: "auto", BuildArgs: []string{"BUILDKIT_SYNTAX=example.com/frontend:1"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			bc, bo, err := parseBuildctl(t, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			got := want{Context: bc.contextDir, File: bo.file, BuildArgs: bo.buildArgs, Target: bo.target, Labels: bo.labels,
				Platform: bo.platform, NoCache: bo.noCache, Outputs: bo.outputs, CacheFrom: bo.cache.from, CacheTo: bo.cache.to,
				Secrets: bo.secrets, Progress: bo.progress, MetadataFile: bo.metadataFile, Insecure: bo.reg.insecure,
				Compress: builder.Compression{Type: bo.compression.typ, Level: bo.compression.level.v, Force: bo.compression.force},
				Wait:     bo.state.wait, Notes: bc.notes}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
			// What imgbuild build's own checks make of it.
			if _, err := bo.plan(bc.contextDir, strings.NewReader(""), os.LookupEnv); err != nil {
				t.Errorf("plan: %v", err)
			}
		})
	}
}

// TestBuildctlFlagErrors: each refused or malformed buildctl flag fails
// before any work, naming the flag and the value.
func TestBuildctlFlagErrors(t *testing.T) {
	buildctlDirs(t)
	base := []string{"build", "--frontend", "dockerfile.v0", "--local", "context=."}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--local", "context=."}, "--frontend is required"},
		{[]string{"build", "--frontend", "dockerfile.v1", "--local", "context=."}, `--frontend "dockerfile.v1": imgbuild runs dockerfile.v0`},
		{[]string{"build", "--frontend", "gateway.v0", "--local", "context=."}, "--frontend gateway.v0 needs --opt source=IMAGE"},
		{[]string{"build", "--frontend", "gateway.v0", "--opt", "source=example.com/fe:1", "--local", "context=."},
			"--frontend gateway.v0 --opt source=example.com/fe:1 pulls and runs that frontend image; pass --allow-external-frontend"},
		{[]string{"build", "--frontend", "dockerfile.v0"}, "--local context=DIR is required"},
		{[]string{"build", "--frontend", "dockerfile.v0", "--local", "context=/nonexistent-ctx"}, `--local "context=/nonexistent-ctx": stat /nonexistent-ctx`},
		{with("--local", "foo=."), `--local "foo=.": a Dockerfile build reads only --local context= and --local dockerfile=`},
		{with("--local", "dockerfile"), `--local "dockerfile": want NAME=DIR`},
		{[]string{"build", "--frontend", "dockerfile.v0", "--local", "context=Dockerfile"}, `--local "context=Dockerfile": Dockerfile is not a directory`},
		{with("--opt", "target"), `--opt "target": want KEY=VALUE`},
		{with("--opt", "no-cache=build"), "--opt no-cache=build: per-stage no-cache is not supported"},
		{with("--opt", "platform=linux/amd64,linux/arm64"), "--opt platform=linux/amd64,linux/arm64: imgbuild builds one platform per build"},
		{with("--opt", "context:base=docker-image://alpine"), "--opt context:base=docker-image://alpine: named build contexts are not supported"},
		{with("--opt", "attest:sbom="), "--opt attest:sbom=: not an option imgbuild takes"},
		{with("--opt", "source=docker/dockerfile:1"), "--opt source=docker/dockerfile:1: only with --frontend gateway.v0"},
		{with("--output", "type=exotic"), `--output "type=exotic": unknown type "exotic"`},
		{with("--output", "name=example.com/app"), `--output "name=example.com/app": missing type=`},
		{with("--output", "type=image,name=example.com/app,push=true,compression=brotli"), `--output "type=image,name=example.com/app,push=true,compression=brotli": `},
		{with("--output", "type=image,name=example.com/app,push=true,oci-mediatypes=false"), `oci-mediatypes=false: imgbuild writes OCI media types`},
		{with("--output", "type=image,name=example.com/app,push=true,annotation.foo=bar"), `--output "type=image,name=example.com/app,push=true,annotation.foo=bar": key "annotation.foo" does not apply to type=image`},
		{with("-o", "type=image,name=a.example/x,push=true,compression=zstd", "-o", "type=oci,dest=x.tar,compression=gzip"),
			`--output "type=oci,dest=x.tar,compression=gzip": compression differs from --output "type=image,name=a.example/x,push=true,compression=zstd"'s`},
		{with("--output", "type=local,dest=/nonexistent-parent/out"), `--output "type=local,dest=/nonexistent-parent/out": dest=/nonexistent-parent/out: directory /nonexistent-parent`},
		{with("--output", "type=image,push=true"), `--output "type=image,push=true": pushing needs --tag or name=`},
		{with("--export-cache", "type=,ref=example.com/cache"), `--export-cache "type=,ref=example.com/cache": --export-cache requires type=<type>`},
		{with("--local", "context="+os.TempDir()), `--local "context=` + os.TempDir() + `": context= given twice`},
		{with("--export-cache", "type=s3,bucket=b"), `--export-cache "type=s3,bucket=b": unknown type "s3"`},
		{with("--export-cache", "type=registry,ref=example.com/c,mode=all"), `--export-cache "type=registry,ref=example.com/c,mode=all": mode=all: want min or max`},
		{with("--import-cache", "type=local"), `--import-cache "type=local": type=local needs src=`},
		{with("--import-cache", "type=inline"), `--import-cache "type=inline": type=inline is export only`},
		{with("--progress", "fancy"), `--progress "fancy": want auto, tty, plain, rawjson or quiet`},
		{with("--ssh", "default"), "--ssh default: SSH agent forwarding (RUN --mount=type=ssh) is not supported"},
		{with("--allow", "network.host"), "--allow network.host: entitlements (network.host, security.insecure, device) are not supported"},
		{with("--oci-layout", "base=/layout"), "--oci-layout base=/layout: OCI layout sources are not supported"},
		{with("--registry-auth-tlscontext", "host=https://r.example,insecure=true"), "--registry-auth-tlscontext host=https://r.example,insecure=true: use --registry-certificate"},
	} {
		_, bo, err := parseBuildctl(t, tc.args)
		if err == nil {
			// Checks imgbuild build makes itself (progress) come with the plan.
			_, err = bo.plan(".", strings.NewReader(""), os.LookupEnv)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v; want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestBuildctlSourceDateEpoch: SOURCE_DATE_EPOCH in the environment reaches
// the build, as buildctl passes it, and a bad one fails before the build,
// as in imgbuild build.
func TestBuildctlSourceDateEpoch(t *testing.T) {
	buildctlDirs(t)
	args := []string{"build", "--frontend", "dockerfile.v0", "--local", "context=."}
	for _, tc := range []struct{ env, want, err string }{
		{env: "1700000000", want: "1700000000"},
		{env: "yesterday", err: `SOURCE_DATE_EPOCH="yesterday" in the environment: want a Unix time in seconds`},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", tc.env)
		bc, bo, err := parseBuildctl(t, args)
		if err != nil {
			t.Fatal(err)
		}
		p, err := bo.plan(bc.contextDir, strings.NewReader(""), os.LookupEnv)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SOURCE_DATE_EPOCH=%s: error %v, want %q", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := p.req.BuildArgs["SOURCE_DATE_EPOCH"]; got != tc.want {
			t.Errorf("SOURCE_DATE_EPOCH=%s: build arg %q", tc.env, got)
		}
	}
}
