package cmd

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/imgbuild/imgbuild/pkg/builder"
)

func TestCompressionFlags(t *testing.T) {
	lvl := func(n int) *int { return &n }
	for _, tc := range []struct {
		args    []string
		want    builder.Compression
		wantErr string
	}{
		{args: nil, want: builder.Compression{Type: "gzip"}},
		{args: []string{"--compression", "zstd"}, want: builder.Compression{Type: "zstd"}},
		{args: []string{"--compression=zstd", "--compression-level=3", "--force-compression"}, want: builder.Compression{Type: "zstd", Level: lvl(3), Force: true}},
		{args: []string{"--compression-level", "1"}, want: builder.Compression{Type: "gzip", Level: lvl(1)}},
		{args: []string{"--compression-level", "0"}, want: builder.Compression{Type: "gzip", Level: lvl(0)}},
		{args: []string{"--compression", "estargz"}, want: builder.Compression{Type: "estargz"}},
		{args: []string{"--compression", "uncompressed", "--force-compression"}, want: builder.Compression{Type: "uncompressed", Force: true}},
		{args: []string{"--compression", "lz4"}, wantErr: `--compression: unsupported layer compression "lz4" (want gzip, zstd, estargz or uncompressed)`},
		{args: []string{"--compression-level", "abc"}, wantErr: `invalid argument "abc" for "--compression-level" flag: want an integer`},
		{args: []string{"--compression-level", "10"}, wantErr: "--compression-level: invalid compression level 10 for gzip (want 0 to 9)"},
		{args: []string{"--compression", "zstd", "--compression-level", "23"}, wantErr: "--compression-level: invalid compression level 23 for zstd (want 0 to 22)"},
		{args: []string{"--compression", "uncompressed", "--compression-level", "1"}, wantErr: "--compression-level: invalid compression level: uncompressed layers have no level"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var c compressionFlags
			f := pflag.NewFlagSet("build", pflag.ContinueOnError)
			c.addFlags(f)
			var req builder.Request
			err := f.Parse(tc.args)
			if err == nil {
				err = c.apply(&req)
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, req.Compression); d != "" {
				t.Errorf("compression (-want +got):\n%s", d)
			}
		})
	}
}
