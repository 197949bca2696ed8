//go:build linux

package embedded

import (
	"encoding/json"
	"testing"

	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestBaseDiffIDs(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	cfg, err := json.Marshal(ocispecs.Image{RootFS: ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{a, b}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		meta map[string][]byte
		p    *exptypes.Platform
		want int
	}{
		{"single platform", map[string][]byte{exptypes.ExporterImageBaseConfigKey: cfg}, nil, 2},
		{"per platform", map[string][]byte{exptypes.ExporterImageBaseConfigKey + "/linux/amd64": cfg}, &exptypes.Platform{ID: "linux/amd64"}, 2},
		{"FROM scratch", map[string][]byte{}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := baseDiffIDs(tc.meta, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("got %v, want %d diff IDs", got, tc.want)
			}
		})
	}
	if _, err := baseDiffIDs(map[string][]byte{exptypes.ExporterImageBaseConfigKey: []byte("{")}, nil); err == nil {
		t.Error("a broken base config gave no error")
	}
}

// TestBasePrefix checks which layers count as the base image's: the leading
// ones whose diff IDs are the base config's, up to the first that differs.
func TestBasePrefix(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	layers := func(ids ...digest.Digest) []ocispecs.Descriptor {
		var out []ocispecs.Descriptor
		for _, id := range ids {
			out = append(out, ocispecs.Descriptor{Annotations: map[string]string{labels.LabelUncompressed: id.String()}})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		base   []digest.Digest
		layers []ocispecs.Descriptor
		want   int
	}{
		{"base and own layers", []digest.Digest{a, b}, layers(a, b, c), 2},
		{"diverges from the base", []digest.Digest{a, b}, layers(a, c, b), 1},
		{"no base", nil, layers(a, b), 0},
		{"only base layers", []digest.Digest{a, b}, layers(a, b), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &ownLayersRef{base: tc.base}
			if got := r.basePrefix(t.Context(), tc.layers); got != tc.want {
				t.Errorf("basePrefix = %d, want %d", got, tc.want)
			}
		})
	}
}
