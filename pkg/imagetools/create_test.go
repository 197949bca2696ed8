package imagetools

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// remoteGetter is a [Getter] straight over ggcr's remote.
type remoteGetter struct{}

func (remoteGetter) Get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	return remote.Get(ref, remote.WithContext(ctx))
}

// pushImage pushes a random image for platform (os/arch, "" for none) to
// host/app and returns its digest reference.
func pushImage(t *testing.T, host, platform string) name.Reference {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, _ = strings.Cut(platform, "/")
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, host+"/app@"+d.String())
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestCreate(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(regserver.New(regserver.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	amd, arm, arm2 := pushImage(t, host, "linux/amd64"), pushImage(t, host, "linux/arm64"), pushImage(t, host, "linux/arm64")
	none := pushImage(t, host, "")

	// An index source adds its children, with their platforms.
	armImg, err := remote.Image(arm)
	if err != nil {
		t.Fatal(err)
	}
	nested := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: armImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	nestedRef := mustRef(t, host+"/app:arm-index")
	if err := remote.WriteIndex(nestedRef, nested); err != nil {
		t.Fatal(err)
	}

	idx, err := Create(t.Context(), remoteGetter{}, []name.Reference{amd, nestedRef, arm})
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Platform.String()+" "+m.Digest.String())
	}
	want := []string{"linux/amd64 " + amd.Identifier(), "linux/arm64 " + arm.Identifier()}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("children = %v, want %v (arm64 once)", got, want)
	}

	for _, tc := range []struct {
		name string
		srcs []name.Reference
		want string
	}{
		{"two images for one platform", []name.Reference{arm, arm2}, "are both images for linux/arm64"},
		{"no platform", []name.Reference{none}, none.String() + ": its config names no platform"},
		{"missing", []name.Reference{mustRef(t, host+"/app:missing")}, "reading " + host + "/app:missing"},
		{"none", nil, "no source images"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(t.Context(), remoteGetter{}, tc.srcs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
