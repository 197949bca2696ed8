package publish

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestMetadataNames checks buildx's image.name entries for pushes by
// digest and name-canonical=true.
func TestMetadataNames(t *testing.T) {
	t.Parallel()
	d := v1.Hash{Algorithm: "sha256", Hex: "4f1c0000000000000000000000000000000000000000000000000000000000aa"}
	tag := name.MustParseReference("reg.example/app:v1")
	repo, err := name.NewRepository("reg.example/app")
	if err != nil {
		t.Fatal(err)
	}
	other, err := name.NewRepository("reg.example/other")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want []string
	}{
		{"tag", Options{Names: []name.Reference{tag}}, []string{"reg.example/app:v1"}},
		{"by digest", Options{ByDigest: []name.Repository{repo}}, []string{"reg.example/app"}},
		{"by digest, canonical", Options{ByDigest: []name.Repository{repo, other}, NameCanonical: true},
			[]string{"reg.example/app@" + d.String(), "reg.example/other@" + d.String()}},
		{"tag, canonical", Options{Names: []name.Reference{tag}, ByDigest: []name.Repository{repo}, NameCanonical: true},
			[]string{"reg.example/app:v1", "reg.example/app@" + d.String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, metadataNames(tc.o, d)); diff != "" {
				t.Errorf("image.name (-want +got):\n%s", diff)
			}
		})
	}
}
