package cmd

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgbuild/imgbuild/pkg/statedir"
)

// TestBuildErrors checks that each kind of bad input fails with a message
// that names what is at fault, a non-zero exit, nothing pushed and no output
// written.
func TestBuildErrors(t *testing.T) {
	e := setup(t)
	root := t.TempDir()

	// A registry that refuses every credential, to check auth errors.
	deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
	}))
	defer deny.Close()
	denyHost := strings.TrimPrefix(deny.URL, "http://")

	for _, tc := range []struct {
		name       string
		dockerfile string
		files      map[string]string
		tag        string // defaults to a fresh repo in the test registry
		want       []string
		exit       int
	}{{
		name:       "syntax error",
		dockerfile: "ARG BASE\nFROM ${BASE}\nRUN true\nFOO bar\n",
		want:       []string{"Dockerfile:4", "unknown instruction: FOO"},
	}, {
		name:       "failing RUN",
		dockerfile: "ARG BASE\nFROM ${BASE}\nRUN echo about-to-fail && exit 7\n",
		want:       []string{"about-to-fail", "RUN echo about-to-fail && exit 7", "exit code: 7", "Dockerfile:3"},
	}, {
		name:       "missing COPY source",
		dockerfile: "ARG BASE\nFROM ${BASE}\nCOPY does-not-exist.txt /x\n",
		want:       []string{`"/does-not-exist.txt" not found in the build context`, "Dockerfile:3"},
	}, {
		name:       "unknown base image",
		dockerfile: "FROM " + e.registry + "/no/such-image:v9\nRUN true\n",
		want:       []string{e.registry + "/no/such-image:v9", "not found"},
	}, {
		name:       "registry auth failure",
		dockerfile: "ARG BASE\nFROM ${BASE}\nRUN echo ok > /ok\n",
		tag:        denyHost + "/app:v1",
		want:       []string{"authenticating to " + denyHost},
	}, {
		name:       "external frontend",
		dockerfile: "# syntax=example.com/custom/frontend:1\nARG BASE\nFROM ${BASE}\n",
		want:       []string{"Dockerfile:1", `"example.com/custom/frontend:1"`, "--allow-external-frontend"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"Dockerfile": tc.dockerfile}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := writeContext(t, files)
			tag := tc.tag
			if tag == "" {
				tag = fmt.Sprintf("%s/e2e/err-%s:v1", e.registry, strings.ToLower(strings.ReplaceAll(tc.name, " ", "-")))
			}
			out := filepath.Join(t.TempDir(), "layout")
			tarOut := filepath.Join(t.TempDir(), "image.tar")
			r := e.build(t, root, "-t", tag, "--push", "-o", "type=oci,tar=false,dest="+out, "-o", "type=docker,dest="+tarOut, dir)
			if r.code == 0 {
				t.Fatalf("build succeeded, want failure")
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing on failure", r.stdout)
			}
			if tc.tag == "" {
				ref, err := name.ParseReference(tag)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := remote.Head(ref); err == nil {
					t.Errorf("%s was pushed by a failed build", tag)
				}
			}
			if tc.name != "registry auth failure" {
				// Outputs are written after the build succeeds; the
				// push failure case writes them before pushing.
				for _, p := range []string{out, tarOut} {
					if _, err := os.Stat(p); err == nil {
						t.Errorf("%s written by a failed build", p)
					}
				}
			}
		})
	}

	// The state dir is still usable after all of that.
	ok := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo fine > /fine\n"})
	if r := e.build(t, root, ok); r.code != 0 {
		t.Fatalf("build after failures: %s", r.stderr)
	}
}

// TestBuildStateDirBusy checks that a second imgbuild on a state dir in use
// fails at once and names the holder.
func TestBuildStateDirBusy(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	lock, err := statedir.At(root).Lock(t.Context(), statedir.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n"})
	r := e.build(t, root, dir)
	if r.code == 0 {
		t.Fatal("build on a locked state dir succeeded")
	}
	if !strings.Contains(r.stderr, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(r.stderr, root) {
		t.Errorf("error does not name the holder and the dir:\n%s", r.stderr)
	}
}

// TestBuildRuncGate checks that an old runc is refused with its version and
// CVEs, and that the override builds with a warning.
func TestBuildRuncGate(t *testing.T) {
	e := setup(t)
	fake := filepath.Join(t.TempDir(), "runc")
	script := "#!/bin/sh\necho 'runc version 1.1.5'\necho 'spec: 1.0.2-dev'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY Dockerfile /\n"})
	args := []string{"build", "--root", t.TempDir(), "--runc", fake, "--progress", "plain", "--build-arg", "BASE=" + e.base}
	r := imgbuild(t, "", append(args, dir)...)
	if r.code == 0 {
		t.Fatal("an old runc was accepted")
	}
	for _, w := range []string{"1.1.5", "CVE-2024-21626", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881", "--allow-insecure-runc"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("refusal lacks %q", w)
		}
	}
	// A build with no RUN step does not start runc, so the override can
	// be checked with the fake.
	r = imgbuild(t, "", append(args, "--allow-insecure-runc", dir)...)
	if r.code != 0 {
		t.Fatalf("--allow-insecure-runc: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, "1.1.5") || !strings.Contains(strings.ToLower(r.stderr), "warn") {
		t.Errorf("no warning naming the runc version:\n%s", r.stderr)
	}
}

// TestBuildFlagErrors checks flag validation that happens before any work.
// TestBuildQuiet: -q and --quiet are --progress quiet, as in buildx.
func TestBuildQuiet(t *testing.T) {
	for _, args := range [][]string{{"-q"}, {"--quiet"}, {"--quiet", "--progress", "quiet"}, {"-q", "--progress", "auto"}} {
		bo := &buildOptions{}
		cmd := newBuildCmdWith(&rootOptions{}, bo)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		p, err := bo.plan(t.TempDir(), nil, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if p.req.Progress != "quiet" {
			t.Errorf("%v: progress %q, want quiet", args, p.req.Progress)
		}
	}
}

// TestBuildNoOutputWarning: tags with nothing to push them to or write
// them out warn, as buildx does, and the build still goes on (to fail here
// on the missing runc).
func TestBuildNoOutputWarning(t *testing.T) {
	const warning = "No output specified: the build result will only remain in the build cache; use --push to push the tags or -o type=oci|docker,dest=PATH to write the image out"
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		warn bool
	}{
		{[]string{"-t", "app:dev"}, true},
		{[]string{"-t", "app:dev", "--push"}, false},
		{[]string{"-t", "app:dev", "-o", "type=oci,dest=" + filepath.Join(dir, "layout")}, false},
		{[]string{"-o", "type=registry,name=example.com/app:1"}, false},
		{[]string{"-t", "app:dev", "-o", "type=image,push=false"}, false},
	} {
		args := append([]string{"build", "--runc", "/nonexistent/runc"}, append(tc.args, dir)...)
		r := run(t, "", args...)
		if r.code == 0 || !strings.Contains(r.stderr, "/nonexistent/runc") {
			t.Errorf("%v: exit %d, stderr %q; want the build to go on and fail on the missing runc", tc.args, r.code, r.stderr)
		}
		if got := strings.Contains(r.stderr, warning); got != tc.warn {
			t.Errorf("%v: warning shown %v, want %v; stderr %q", tc.args, got, tc.warn, r.stderr)
		}
	}
}

func TestBuildFlagErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--push", "."}, "--push needs at least one --tag"},
		{[]string{"build", "-t", "UPPER/Case:bad", "."}, `--tag: parsing reference "UPPER/Case:bad": invalid reference format: repository name (UPPER/Case) must be lowercase`},
		{[]string{"build", "-t", "reg.example.com:5000/Team/app", "."}, "repository name (Team/app) must be lowercase"},
		{[]string{"build", "-o", "type=nope,dest=x", "."}, `unknown type "nope"`},
		{[]string{"build", "-o", "type=oci", "."}, "needs dest="},
		{[]string{"build", "-o", "type=oci,dest=x.tar,compression=zstd", "."}, `--output "type=oci,dest=x.tar,compression=zstd": key "compression" does not apply to type=oci`},
		{[]string{"build", "-o", "type=oci,dest=x,tar=maybe", "."}, `--output "type=oci,dest=x,tar=maybe": tar="maybe": want true or false`},
		{[]string{"build", "-o", "type=image,push=yes please", "."}, `push="yes please": want true or false`},
		{[]string{"build", "-o", "type=local,dest=-", "."}, `--output "type=local,dest=-": dest=-: a directory cannot go to standard output`},
		{[]string{"build", "-o", "type=oci,tar=false,dest=-", "."}, `dest=-: a directory cannot go to standard output`},
		{[]string{"build", "-o", "type=docker", "."}, "type=docker needs dest=FILE: imgbuild has no daemon to load into"},
		{[]string{"build", "-o", "type=tar,dest=-", "-o", "type=oci,dest=-", "."}, "only one output can go to standard output"},
		{[]string{"build", "-o", "type=oci,dest=/nonexistent/dir/img.tar", "."}, "dest=/nonexistent/dir/img.tar: directory /nonexistent/dir: stat /nonexistent/dir: no such file or directory"},
		{[]string{"build", "-o", "type=docker,dest=/", "."}, "dest=/ is a directory; type=docker writes a tarball file"},
		{[]string{"build", "-o", "type=local,dest=" + file, "."}, "dest=" + file + " exists and is not a directory"},
		{[]string{"build", "-o", "type=image,push=true", "."}, `--output "type=image,push=true": pushing needs --tag or name=`},
		{[]string{"build", "--progress", "fancy", "."}, `--progress "fancy"`},
		{[]string{"build", "--label", "novalue", "."}, `--label "novalue"`},
		{[]string{"build"}, "accepts 1 arg"},
		{[]string{"build", "-q", "--progress", "plain", "."}, `--progress "plain" and --quiet cannot be used together`},
		{[]string{"build", "--load", "-t", "app:dev", "."}, "--load: imgbuild has no daemon to load the image into; use -o type=docker,dest=FILE (then docker load -i FILE) or --push"},
	} {
		r := run(t, "", tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
