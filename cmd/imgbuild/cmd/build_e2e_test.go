package cmd

import (
	"archive/tar"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// fullDockerfile exercises the image config end to end.
const fullDockerfile = `ARG BASE
FROM ${BASE}
ARG GREETING=default
ENV APP_HOME=/srv/app MODE=test
WORKDIR /srv/app
COPY hello.txt ./
COPY --chown=1000:1000 data/ ./data/
RUN echo "$GREETING from RUN" > /srv/app/run.txt && mkdir -p /srv/app/tmp && echo junk > /srv/app/tmp/junk.txt
RUN rm /srv/app/tmp/junk.txt
RUN <<EOT
set -e
echo "heredoc line 1" > /srv/app/heredoc.txt
echo "heredoc line 2" >> /srv/app/heredoc.txt
EOT
COPY <<EOF /etc/motd
welcome
EOF
LABEL org.example.team="builders" version="1.0"
EXPOSE 8080/tcp 9090/udp
USER app
ENTRYPOINT ["sh", "-c"]
CMD ["cat /srv/app/run.txt"]
`

func TestBuildPushFullConfig(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile":   fullDockerfile,
		"hello.txt":    "hello world\n",
		"data/a.txt":   "a\n",
		"data/b/c.txt": "c\n",
	})
	root := t.TempDir()
	tag1 := e.registry + "/e2e/full:v1"
	tag2 := e.registry + "/e2e/full:latest"
	tag3 := e.registry + "/e2e/other:v1"
	md := filepath.Join(t.TempDir(), "md.json")
	iid := filepath.Join(t.TempDir(), "iid")
	r := e.build(t, root, "-t", tag1, "-t", tag2, "-t", tag3, "--push",
		"--build-arg", "GREETING=hi", "--label", "extra=from-flag",
		"--metadata-file", md, "--iidfile", iid, dir)
	if r.code != 0 {
		t.Fatalf("build failed: %s", r.stderr)
	}
	digest := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("stdout = %q, want the digest", r.stdout)
	}

	img := pull(t, tag1)
	for _, tag := range []string{tag1, tag2, tag3} {
		d, err := pull(t, tag).Digest()
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != digest {
			t.Errorf("%s has digest %s, want %s", tag, d, digest)
		}
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type = %s, want OCI", mt)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.WorkingDir != "/srv/app" || c.User != "app" {
		t.Errorf("WorkingDir=%q User=%q", c.WorkingDir, c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"sh", "-c"}) || !slices.Equal(c.Cmd, []string{"cat /srv/app/run.txt"}) {
		t.Errorf("Entrypoint=%q Cmd=%q", c.Entrypoint, c.Cmd)
	}
	for _, env := range []string{"APP_HOME=/srv/app", "MODE=test"} {
		if !slices.Contains(c.Env, env) {
			t.Errorf("Env %q missing from %q", env, c.Env)
		}
	}
	for k, v := range map[string]string{"org.example.team": "builders", "version": "1.0", "extra": "from-flag"} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	for _, p := range []string{"8080/tcp", "9090/udp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	var runHistory bool
	for _, h := range cf.History {
		if strings.Contains(h.CreatedBy, "rm /srv/app/tmp/junk.txt") {
			runHistory = true
		}
	}
	if !runHistory {
		t.Errorf("history lacks the RUN step: %+v", cf.History)
	}

	fs := files(t, img)
	for p, w := range map[string]string{
		"srv/app/hello.txt":    "hello world\n",
		"srv/app/data/a.txt":   "a\n",
		"srv/app/data/b/c.txt": "c\n",
		"srv/app/run.txt":      "hi from RUN\n",
		"srv/app/heredoc.txt":  "heredoc line 1\nheredoc line 2\n",
		"etc/motd":             "welcome\n",
	} {
		if got, ok := fs[p]; !ok || got != w {
			t.Errorf("%s = %q (present %v), want %q", p, got, ok, w)
		}
	}
	if _, ok := fs["bin/busybox"]; !ok {
		t.Error("the base image's bin/busybox is missing")
	}
	if _, ok := fs["srv/app/tmp/junk.txt"]; ok {
		t.Error("srv/app/tmp/junk.txt survives its rm")
	}
	// The rm is a whiteout in a later layer than the one that made the file.
	created, whiteout := -1, -1
	for i, l := range layerFiles(t, img) {
		if _, ok := l["srv/app/tmp/junk.txt"]; ok {
			created = i
		}
		if _, ok := l["srv/app/tmp/.wh.junk.txt"]; ok {
			whiteout = i
		}
	}
	if created < 0 || whiteout <= created {
		t.Errorf("junk.txt created in layer %d, whiteout in layer %d", created, whiteout)
	}

	// --metadata-file carries buildx's keys, --iidfile the config digest.
	var meta map[string]any
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	cd, _ := img.ConfigName()
	if meta["containerimage.digest"] != digest || meta["containerimage.config.digest"] != cd.String() {
		t.Errorf("metadata = %v, want digest %s config %s", meta, digest, cd)
	}
	names, _ := meta["image.name"].(string)
	for _, tag := range []string{tag1, tag2, tag3} {
		if !strings.Contains(names, tag) {
			t.Errorf("image.name %q lacks %s", names, tag)
		}
	}
	if b, _ := os.ReadFile(iid); string(b) != cd.String() {
		t.Errorf("iidfile = %q, want %s", b, cd)
	}
}

func TestBuildMultiStageTarget(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE} AS compile
RUN mkdir /out && echo compiled > /out/artifact && echo intermediate > /out/scratch
FROM ${BASE} AS test
RUN echo test-stage > /test.txt
FROM ${BASE}
COPY --from=compile /out/artifact /app/artifact
`})
	root := t.TempDir()
	final := e.registry + "/e2e/multi:final"
	if r := e.build(t, root, "-t", final, "--push", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	fs := files(t, pull(t, final))
	if fs["app/artifact"] != "compiled\n" {
		t.Errorf("app/artifact = %q", fs["app/artifact"])
	}
	for _, p := range []string{"out/scratch", "test.txt"} {
		if _, ok := fs[p]; ok {
			t.Errorf("%s from another stage is in the final image", p)
		}
	}

	tgt := e.registry + "/e2e/multi:test"
	r := e.build(t, root, "--target", "test", "-t", tgt, "--push", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	fs = files(t, pull(t, tgt))
	if fs["test.txt"] != "test-stage\n" {
		t.Errorf("--target test: test.txt = %q", fs["test.txt"])
	}
	if _, ok := fs["app/artifact"]; ok {
		t.Error("--target test built the final stage")
	}
	if strings.Contains(r.stderr, "echo compiled > /out/artifact") {
		t.Error("--target test ran the compile stage it does not depend on")
	}
}

func TestBuildDockerignore(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile":              "ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\n",
		".dockerignore":           "**/*.log\nsecrets/\n*.md\n!README.md\nnode_modules\n",
		"app.go":                  "package main\n",
		"debug.log":               "x",
		"deep/nested/trace.log":   "x",
		"deep/nested/keep.txt":    "keep\n",
		"secrets/key.pem":         "x",
		"NOTES.md":                "x",
		"README.md":               "readme\n",
		"node_modules/pkg/pkg.js": "x",
	})
	ref := e.registry + "/e2e/ignore:v1"
	if r := e.build(t, t.TempDir(), "-t", ref, "--push", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	fs := files(t, pull(t, ref))
	for _, p := range []string{"ctx/app.go", "ctx/deep/nested/keep.txt", "ctx/README.md", "ctx/Dockerfile"} {
		if _, ok := fs[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	for _, p := range []string{"ctx/debug.log", "ctx/deep/nested/trace.log", "ctx/secrets/key.pem", "ctx/NOTES.md", "ctx/node_modules/pkg/pkg.js"} {
		if _, ok := fs[p]; ok {
			t.Errorf("%s should be excluded by .dockerignore", p)
		}
	}
}

// TestBuildSecretValueNowhere uses a Dockerfile that never names the
// secret's value, so the value must appear nowhere: layers, config,
// history, stdout or a debug-level log.
func TestBuildSecretValueNowhere(t *testing.T) {
	e := setup(t)
	const fileSecret = "file-s3cr3t-91e0aa"
	const envSecret = "env-s3cr3t-3c7d55"
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte(fileSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IMGBUILD_TEST_TOKEN", envSecret)
	dir := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
RUN --mount=type=secret,id=tok --mount=type=secret,id=envtok,env=ENVTOK \
    wc -c < /run/secrets/tok > /len.txt && printf %s "$ENVTOK" | wc -c > /envlen.txt
`})
	ref := e.registry + "/e2e/secret2:v1"
	r := e.build(t, t.TempDir(), "-t", ref, "--push",
		"--secret", "id=tok,src="+secretFile, "--secret", "id=envtok,env=IMGBUILD_TEST_TOKEN",
		"--log-level", "debug", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	img := pull(t, ref)
	fs := files(t, img)
	if got := strings.TrimSpace(fs["len.txt"]); got != "18" {
		t.Errorf("RUN saw a file secret of %q bytes, want 18", got)
	}
	if got := strings.TrimSpace(fs["envlen.txt"]); got != "17" {
		t.Errorf("RUN saw an env secret of %q bytes, want 17", got)
	}
	if _, ok := fs["run/secrets/tok"]; ok {
		t.Error("the secret's mount point file is in the image")
	}
	blob := allBlobs(t, img)
	for _, s := range []string{fileSecret, envSecret} {
		if bytes.Contains(blob, []byte(s)) {
			t.Errorf("secret %q found in the image's manifest, config, history or layers", s)
		}
		if strings.Contains(r.stderr, s) || strings.Contains(r.stdout, s) {
			t.Errorf("secret %q found in the build's output", s)
		}
	}
}

func TestBuildCacheMountReused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	root := t.TempDir()
	first := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
RUN --mount=type=cache,target=/cache,id=e2e-cache echo "from first build" > /cache/stamp
`})
	if r := e.build(t, root, first); r.code != 0 {
		t.Fatal(r.stderr)
	}
	second := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
RUN --mount=type=cache,target=/cache,id=e2e-cache cp /cache/stamp /seen.txt
`})
	ref := e.registry + "/e2e/cachemount:v1"
	if r := e.build(t, root, "-t", ref, "--push", second); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := files(t, pull(t, ref))["seen.txt"]; got != "from first build\n" {
		t.Errorf("second build saw %q in the cache mount", got)
	}
}

func TestBuildCachedRebuild(t *testing.T) {
	t.Parallel()
	e := setup(t)
	root := t.TempDir()
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo once > /once.txt\n"})
	r1 := e.build(t, root, dir)
	r2 := e.build(t, root, dir)
	if r1.code != 0 || r2.code != 0 {
		t.Fatal(r1.stderr, r2.stderr)
	}
	if !strings.Contains(r2.stderr, "CACHED") {
		t.Errorf("second build has no CACHED step:\n%s", r2.stderr)
	}
	if r1.stdout != r2.stdout {
		t.Errorf("digest changed on a cached rebuild: %s vs %s", r1.stdout, r2.stdout)
	}
	if !stepCached(t, r2.stderr, "RUN echo once") {
		t.Errorf("second build ran the RUN step again:\n%s", r2.stderr)
	}
	r3 := e.build(t, root, "--no-cache", dir)
	if r3.code != 0 || stepCached(t, r3.stderr, "RUN echo once") {
		t.Errorf("--no-cache build used the cache for RUN:\n%s", r3.stderr)
	}
}

func TestBuildDockerfileFromStdin(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"in.txt": "from context\n"})
	ref := e.registry + "/e2e/stdin:v1"
	r := imgbuild(t, "ARG BASE\nFROM ${BASE}\nCOPY in.txt /in.txt\n",
		"build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "quiet",
		"--build-arg", "BASE="+e.base, "-f", "-", "-t", ref, "--push", dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := files(t, pull(t, ref))["in.txt"]; got != "from context\n" {
		t.Errorf("in.txt = %q", got)
	}
}

func TestBuildNoOutputPrintsDigest(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo x > /x\n"})
	root := t.TempDir()
	r := e.build(t, root, dir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	d := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
		t.Fatalf("stdout = %q, want one digest", r.stdout)
	}
	// Pushing the same build gives the same digest, and the registry serves
	// exactly it.
	ref := e.registry + "/e2e/nooutput:v1"
	r2 := e.build(t, root, "-t", ref, "--push", dir)
	if strings.TrimSpace(r2.stdout) != d {
		t.Errorf("pushed digest %s != unpushed %s", r2.stdout, d)
	}
	rr, _ := name.ParseReference(ref)
	desc, err := remote.Head(rr)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != d {
		t.Errorf("registry serves %s, printed %s", desc.Digest, d)
	}
}

// TestBuildLeavesNothingBehind checks the daemonless promise: once imgbuild
// exits, no process, socket or mount of its state dir remains.
func TestBuildLeavesNothingBehind(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN --mount=type=cache,target=/c sleep 0.2 && echo x > /x\n"})
	if r := e.build(t, root, dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&os.ModeSocket != 0 {
			t.Errorf("socket left behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, e, root)
}

// TestBuildSnapshotters builds with each snapshotter (overlayfs is what
// auto picks here; native and fuse-overlayfs are the fallbacks) and checks
// the image and that no mount or fuse process is left.
func TestBuildSnapshotters(t *testing.T) {
	e := setup(t)
	_, err := exec.LookPath("fuse-overlayfs")
	testutil.Require(t, err == nil, "fuse-overlayfs not installed (make deps)")
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo layered > /l.txt\nRUN rm /l.txt && echo again > /m.txt\n"})
	for _, sn := range []string{"overlayfs", "native", "fuse-overlayfs"} {
		t.Run(sn, func(t *testing.T) {
			root := t.TempDir()
			ref := e.registry + "/e2e/snapshotter-" + sn + ":v1"
			r := e.build(t, root, "--snapshotter", sn, "-t", ref, "--push", dir)
			if r.code != 0 {
				t.Fatal(r.stderr)
			}
			if _, err := os.Stat(filepath.Join(root, "runc-"+sn)); err != nil {
				t.Errorf("state for %s: %v", sn, err)
			}
			fs := files(t, pull(t, ref))
			if _, ok := fs["l.txt"]; ok || fs["m.txt"] != "again\n" {
				t.Errorf("l.txt present=%v m.txt=%q", ok, fs["m.txt"])
			}
			mounts, _ := os.ReadFile("/proc/self/mountinfo")
			if bytes.Contains(mounts, []byte(root)) {
				t.Errorf("mounts of %s left behind", root)
			}
		})
	}
}

// TestBuildCopyFromDevices copies a block and a character device from
// another stage: each keeps its type and numbers in the pushed layer.
//
// It fails until tonistiigi/fsutil is fixed: copy/copy_nowindows.go
// copyDevice clears S_IFSOCK's bits (0o140000) from the mode to turn sockets
// into stub files, which also clears one of S_IFBLK's (0o060000), leaving
// S_IFCHR. BuildKit's file op calls it with no hook of ours in between.
func TestBuildCopyFromDevices(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE} AS dev
RUN mknod /dev-b b 8 0 && mknod /dev-c c 1 3
FROM ${BASE}
COPY --from=dev /dev-b /dev-c /out/
`})
	root := t.TempDir()
	want := map[string]struct {
		typ          byte
		major, minor int64
	}{"dev-b": {tar.TypeBlock, 8, 0}, "dev-c": {tar.TypeChar, 1, 3}}
	for _, tc := range []struct{ target, dir string }{{"dev", ""}, {"", "out/"}} {
		ref := e.registry + "/e2e/devices:" + cmp.Or(tc.target, "final")
		args := []string{"-t", ref, "--push", dir}
		if tc.target != "" {
			args = append([]string{"--target", tc.target}, args...)
		}
		if r := e.build(t, root, args...); r.code != 0 {
			t.Fatal(r.stderr)
		}
		layers, err := pull(t, ref).Layers()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layers[len(layers)-1].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]*tar.Header{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got[strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")] = h
		}
		rc.Close()
		for name, w := range want {
			h := got[tc.dir+name]
			if h == nil {
				t.Errorf("%s: no %s in the last layer", ref, tc.dir+name)
				continue
			}
			if h.Typeflag != w.typ || h.Devmajor != w.major || h.Devminor != w.minor {
				t.Errorf("%s: %s is type %q %d:%d, want type %q %d:%d", ref, h.Name, h.Typeflag, h.Devmajor, h.Devminor, w.typ, w.major, w.minor)
			}
		}
	}
}

// TestBuildSourceDateEpochFromEnv: SOURCE_DATE_EPOCH in the environment
// sets the image's times as buildx does, and a bad one fails before the
// build, naming it.
func TestBuildSourceDateEpochFromEnv(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo x > /x\n"})
	ref := e.registry + "/sde/env:v1"
	r := imgbuildEnv(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, "", "build", "--root", t.TempDir(), "--runc", e.runc,
		"--progress", "quiet", "--build-arg", "BASE="+e.base, "-t", ref, "--push", ctxDir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	cfg, err := pull(t, ref).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(1700000000, 0).UTC(); !cfg.Created.Equal(want) {
		t.Errorf("created = %v, want %v", cfg.Created.Time, want)
	}
	r = imgbuildEnv(t, []string{"SOURCE_DATE_EPOCH=yesterday"}, "", "build", "--root", t.TempDir(), "--runc", e.runc,
		"--progress", "quiet", "--build-arg", "BASE="+e.base, ctxDir)
	if r.code == 0 || !strings.Contains(r.stderr, `SOURCE_DATE_EPOCH="yesterday" in the environment`) {
		t.Errorf("bad SOURCE_DATE_EPOCH: exit %d, %s", r.code, r.stderr)
	}
}

// TestBuildQuietAndRawJSONPush: with --push, quiet prints nothing but the
// digest, and rawjson's standard error is JSON, line by line.
func TestBuildQuietAndRawJSONPush(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo q > /q\n"})
	r := imgbuild(t, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "quiet",
		"--build-arg", "BASE="+e.base, "-t", e.registry+"/quiet/push:v1", "--push", ctxDir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("--progress quiet printed on standard error:\n%s", r.stderr)
	}
	if _, err := v1.NewHash(strings.TrimSpace(r.stdout)); err != nil {
		t.Errorf("standard output %q is not a digest", r.stdout)
	}
	r = imgbuild(t, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "rawjson",
		"--build-arg", "BASE="+e.base, "-t", e.registry+"/quiet/rawjson:v1", "--push", ctxDir)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	lines := 0
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("rawjson line is not JSON: %q", l)
		}
		lines++
	}
	if lines < 3 {
		t.Errorf("rawjson printed %d lines", lines)
	}
}
