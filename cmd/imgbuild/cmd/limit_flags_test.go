package cmd

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgbuild/imgbuild/pkg/builder"
)

func TestLimitFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      limitFlags
		want    builder.Limits
		wantErr string
	}{
		{in: limitFlags{}, want: builder.Limits{}},
		{in: limitFlags{layerSize: "10MB", imageSize: "1GiB", manifestSize: "64kb", configSize: "off", layers: "300"},
			want: builder.Limits{LayerSize: 10 << 20, ImageSize: 1 << 30, ManifestSize: 64 << 10, ConfigSize: builder.NoLimit, Layers: 300}},
		{in: limitFlags{layers: "off"}, want: builder.Limits{Layers: builder.NoLimit}},
		{in: limitFlags{layerSize: "0"}, wantErr: `--max-layer-size 0: want a positive value, or "off"`},
		{in: limitFlags{imageSize: "-5"}, wantErr: "--max-image-size"},
		{in: limitFlags{manifestSize: "big"}, wantErr: "--max-manifest-size"},
		{in: limitFlags{layers: "1MB"}, wantErr: "--max-layers"},
	} {
		got, err := tc.in.limits()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%+v (-want +got):\n%s", tc.in, d)
		}
	}
}

// TestLimitFlagsOnBothCommands checks that build and executor take the
// limit flags, and that each limit's error names its flag.
func TestLimitFlagsOnBothCommands(t *testing.T) {
	t.Parallel()
	root := newRootCmd(nil)
	for _, sub := range []string{"build", "executor"} {
		c, _, err := root.Find([]string{sub})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range limitFlagNames {
			if c.Flags().Lookup(strings.TrimPrefix(f, "--")) == nil {
				t.Errorf("imgbuild %s has no %s", sub, f)
			}
		}
	}
	for _, k := range []builder.LimitKind{builder.LimitLayerSize, builder.LimitImageSize, builder.LimitManifestSize, builder.LimitConfigSize, builder.LimitLayers} {
		if limitFlagNames[k] == "" {
			t.Errorf("no flag for the %s limit", k)
		}
	}
}
