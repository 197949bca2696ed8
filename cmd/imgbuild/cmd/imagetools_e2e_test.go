package cmd

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// runnerResult is what one per-architecture runner hands the merge step.
type runnerResult struct {
	digest   string // printed on stdout
	meta     map[string]any
	nameFile string // --image-name-with-digest-file's content
}

// pushByDigest builds dir in a fresh state dir, as a runner of its own
// would, pushing to repo by digest with buildx's flags.
func (e e2e) pushByDigest(t *testing.T, repo, dir string, args ...string) runnerResult {
	t.Helper()
	out := t.TempDir()
	md, nd := filepath.Join(out, "m.json"), filepath.Join(out, "names")
	args = append(args, "-o", "type=image,name="+repo+",push-by-digest=true,name-canonical=true",
		"--metadata-file", md, "--image-name-with-digest-file", nd, dir)
	r := e.build(t, t.TempDir(), args...)
	if r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	var res runnerResult
	res.digest = strings.TrimSpace(r.stdout)
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res.meta); err != nil {
		t.Fatalf("%s: %v", md, err)
	}
	b, err = os.ReadFile(nd)
	if err != nil {
		t.Fatal(err)
	}
	res.nameFile = string(b)
	return res
}

// TestImagetoolsMergeRunners is the one-runner-per-architecture pattern:
// two empty state dirs push amd64 (with a RUN) and arm64 (COPY only: no
// QEMU here) by digest and untagged, and imagetools create merges them.
func TestImagetoolsMergeRunners(t *testing.T) {
	t.Parallel()
	e := setup(t)
	repo := e.registry + "/imagetools/app"
	amd := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo amd64 > /arch\n"})
	arm := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY arch /arch\n", "arch": "arm64\n"})
	r1 := e.pushByDigest(t, repo, amd, "--platform", "linux/amd64")
	r2 := e.pushByDigest(t, repo, arm, "--platform", "linux/arm64")

	for _, r := range []runnerResult{r1, r2} {
		canonical := repo + "@" + r.digest
		if r.meta["containerimage.digest"] != r.digest || r.meta["image.name"] != canonical {
			t.Errorf("metadata digest %v, image.name %v; want %s, %s", r.meta["containerimage.digest"], r.meta["image.name"], r.digest, canonical)
		}
		if r.nameFile != canonical+"\n" {
			t.Errorf("image-name-with-digest file = %q, want %q", r.nameFile, canonical+"\n")
		}
	}
	for _, c := range []struct {
		r    runnerResult
		arch string
	}{{r1, "amd64"}, {r2, "arm64"}} {
		desc, _ := c.r.meta["containerimage.descriptor"].(map[string]any)
		p, _ := desc["platform"].(map[string]any)
		if p["os"] != "linux" || p["architecture"] != c.arch || desc["digest"] != c.r.digest {
			t.Errorf("containerimage.descriptor = %v, want digest %s and platform linux/%s", desc, c.r.digest, c.arch)
		}
	}
	repoRef, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	noTags(t, repoRef)
	for _, r := range []runnerResult{r1, r2} {
		if _, err := remote.Head(repoRef.Digest(r.digest)); err != nil {
			t.Errorf("%s@%s not pushed: %v", repoRef, r.digest, err)
		}
	}

	// A dry run prints the index and pushes nothing.
	dry := imgbuild(t, "", "imagetools", "create", "--dry-run", "-t", repo+":v1", repo+"@"+r1.digest, repo+"@"+r2.digest)
	if dry.code != 0 {
		t.Fatal(dry.stderr)
	}
	dm, err := v1.ParseIndexManifest(strings.NewReader(dry.stdout))
	if err != nil || len(dm.Manifests) != 2 {
		t.Fatalf("--dry-run printed %q (%v), want an index of 2", dry.stdout, err)
	}
	noTags(t, repoRef)

	cr := imgbuild(t, "", "imagetools", "create", "-t", repo+":v1", repo+"@"+r1.digest, repo+"@"+r2.digest)
	if cr.code != 0 {
		t.Fatal(cr.stderr)
	}
	ref, err := name.ParseReference(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validating %s: %v", ref, err)
	}
	if d, _ := idx.Digest(); d.String() != strings.TrimSpace(cr.stdout) {
		t.Errorf("create printed %q, the tag serves %s", cr.stdout, d)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d children, want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	for i, want := range []struct{ digest, platform string }{{r1.digest, "linux/amd64"}, {r2.digest, "linux/arm64"}} {
		m := im.Manifests[i]
		if m.Digest.String() != want.digest || m.Platform == nil || m.Platform.String() != want.platform {
			t.Errorf("child %d = %s %v, want %s %s", i, m.Digest, m.Platform, want.digest, want.platform)
		}
	}
	// The arm64 child is what the second runner built.
	armImg, err := idx.Image(v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(r2.digest, "sha256:")})
	if err != nil {
		t.Fatal(err)
	}
	if f := files(t, armImg); f["arch"] != "arm64\n" {
		t.Errorf("arm64 child /arch = %q, want arm64", f["arch"])
	}

	in := imgbuild(t, "", "imagetools", "inspect", repo+":v1")
	if in.code != 0 {
		t.Fatal(in.stderr)
	}
	for _, want := range []string{"MediaType: " + string(types.OCIImageIndex), "Platform:    linux/amd64", "Platform:    linux/arm64",
		repo + "@" + r1.digest, repo + "@" + r2.digest} {
		if !strings.Contains(in.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, in.stdout)
		}
	}
	raw := imgbuild(t, "", "imagetools", "inspect", "--raw", repo+":v1")
	rb, _ := idx.RawManifest()
	if raw.code != 0 || raw.stdout != string(rb) {
		t.Errorf("inspect --raw = %q, want the served manifest %q", raw.stdout, rb)
	}

	// --append adds a platform to the index a tag serves.
	single := repo + ":single"
	if r := imgbuild(t, "", "imagetools", "create", "-t", single, repo+"@"+r1.digest); r.code != 0 {
		t.Fatal(r.stderr)
	}
	ap := imgbuild(t, "", "imagetools", "create", "--append", "-t", single, repo+"@"+r2.digest)
	if ap.code != 0 {
		t.Fatal(ap.stderr)
	}
	if strings.TrimSpace(ap.stdout) != strings.TrimSpace(cr.stdout) {
		t.Errorf("--append made %q, want the index of both %q", ap.stdout, cr.stdout)
	}

	// Into another repository of the same registry: the children are
	// mounted there, and the index is complete.
	other := e.registry + "/imagetools/other:v1"
	if r := imgbuild(t, "", "imagetools", "create", "-t", other, repo+"@"+r1.digest, repo+"@"+r2.digest); r.code != 0 {
		t.Fatal(r.stderr)
	}
	oref, _ := name.ParseReference(other)
	oidx, err := remote.Index(oref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(oidx); err != nil {
		t.Fatalf("validating %s: %v", other, err)
	}
	if od, _ := oidx.Digest(); od.String() != strings.TrimSpace(cr.stdout) {
		t.Errorf("%s serves %s, want the same index %s", other, od, cr.stdout)
	}
}

// noTags fails unless repo has no tags. distribution answers a repository
// that has manifests but no tags with NAME_UNKNOWN.
func noTags(t *testing.T, repo name.Repository) {
	t.Helper()
	tags, err := remote.List(repo)
	var terr *transport.Error
	if errors.As(err, &terr) && len(terr.Errors) > 0 && terr.Errors[0].Code == transport.NameUnknownErrorCode {
		return
	}
	if err != nil || len(tags) != 0 {
		t.Fatalf("tags of %s = %v (%v), want none", repo, tags, err)
	}
}

// TestImagetoolsErrors checks that each refusal names the argument at fault.
func TestImagetoolsErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	repo := e.registry + "/imagetools/errors"
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"source not found", []string{"create", "-t", repo + ":v1", repo + ":missing"}, []string{repo + ":missing"}},
		{"digest not found", []string{"create", "-t", repo + ":v1", repo + "@sha256:" + strings.Repeat("0", 64)}, []string{repo + "@sha256:" + strings.Repeat("0", 64)}},
		{"bad tag", []string{"create", "-t", repo + ":Bad Tag", e.base}, []string{"--tag", "Bad Tag"}},
		{"bad source", []string{"create", "-t", repo + ":v1", "Not/A Ref"}, []string{"source", "Not/A Ref"}},
		{"no tag", []string{"create", e.base}, []string{"--tag is required"}},
		{"inspect not found", []string{"inspect", repo + ":missing"}, []string{repo + ":missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := imgbuild(t, "", append([]string{"imagetools"}, tc.args...)...)
			if r.code == 0 {
				t.Fatalf("exit 0, stdout %q", r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}
