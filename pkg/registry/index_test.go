package registry

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgbuild/imgbuild/pkg/imagetools"
)

// TestPushIndexOfPushedImages is the merge after one runner per
// architecture: the images are in team/app by digest. The index pushed
// there copies nothing, and pushed to team/other it mounts every blob from
// team/app and reads none.
func TestPushIndexOfPushedImages(t *testing.T) {
	t.Parallel()
	host, reqs := newMountRegistry(t, mountRegistry{})
	kc := Options{Keychain: authn.NewMultiKeychain()}
	p, err := NewPusher(kc)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []name.Reference
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ref := mustRefs(t, host+"/team/app@"+d.String())
		if _, err := p.Push(t.Context(), img, ref); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, ref...)
	}
	idx, err := imagetools.Create(t.Context(), p, srcs)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, arch := range []string{"amd64", "arm64"} {
		if got := im.Manifests[i].Platform; got == nil || got.String() != "linux/"+arch {
			t.Errorf("child %d platform = %v, want linux/%s", i, got, arch)
		}
	}
	reqs.take()

	want, err := p.PushIndex(t.Context(), idx, mustRefs(t, host+"/team/app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	log := reqs.take()
	t.Logf("same repository:\n%s", strings.Join(log, "\n"))
	if n := uploads(log); n != 0 {
		t.Errorf("%d blob uploads into the repository holding the children, want 0", n)
	}
	for _, r := range log {
		if strings.HasPrefix(r, "PUT /v2/team/app/manifests/") && r != "PUT /v2/team/app/manifests/v1" {
			t.Errorf("child manifest put again: %s", r)
		}
	}

	if _, err := p.PushIndex(t.Context(), idx, mustRefs(t, host+"/team/other:v1")); err != nil {
		t.Fatal(err)
	}
	log = reqs.take()
	t.Logf("other repository:\n%s", strings.Join(log, "\n"))
	for _, r := range log {
		if strings.Contains(r, "/team/other/blobs/uploads/") && (!strings.HasPrefix(r, "POST ") || !strings.Contains(r, "from=team%2Fapp")) {
			t.Errorf("team/other got a blob other than by a mount from team/app: %s", r)
		}
		if strings.HasPrefix(r, "GET /v2/team/app/blobs/") {
			t.Errorf("blob read from team/app to be copied: %s", r)
		}
	}
	for _, ref := range mustRefs(t, host+"/team/app:v1", host+"/team/other:v1") {
		assertServes(t, ref, want, remote.WithAuthFromKeychain(authn.NewMultiKeychain()))
		got, err := remote.Index(ref, remote.WithAuthFromKeychain(authn.NewMultiKeychain()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := got.Image(v1.Hash(im.Manifests[1].Digest)); err != nil {
			t.Errorf("%s: arm64 child: %v", ref, err)
		}
	}
}
