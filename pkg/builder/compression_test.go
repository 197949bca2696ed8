//go:build linux

package builder

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/buildkit/util/compression"
)

func TestExportAttrs(t *testing.T) {
	one, twelve := 1, 12
	for _, tc := range []struct {
		name string
		req  Request
		want map[string]string
		// wantType, wantLevel and wantForce are what BuildKit's exporter
		// parses from the attributes.
		wantType  string
		wantLevel *int
		wantForce bool
	}{{
		name:     "defaults",
		want:     map[string]string{"tar": "false", "oci-mediatypes": "true"},
		wantType: "gzip",
	}, {
		name:     "SOURCE_DATE_EPOCH",
		req:      Request{BuildArgs: map[string]string{"SOURCE_DATE_EPOCH": "0"}},
		want:     map[string]string{"tar": "false", "oci-mediatypes": "true", "rewrite-timestamp": "true"},
		wantType: "gzip",
	}, {
		name:      "gzip level 1",
		req:       Request{Compression: Compression{Type: Gzip, Level: &one}},
		want:      map[string]string{"tar": "false", "oci-mediatypes": "true", "compression": "gzip", "compression-level": "1"},
		wantType:  "gzip",
		wantLevel: &one,
	}, {
		name:      "zstd forced",
		req:       Request{Compression: Compression{Type: Zstd, Level: &twelve, Force: true}},
		want:      map[string]string{"tar": "false", "oci-mediatypes": "true", "compression": "zstd", "compression-level": "12", "force-compression": "true"},
		wantType:  "zstd",
		wantLevel: &twelve,
		wantForce: true,
	}, {
		name:     "estargz",
		req:      Request{Compression: Compression{Type: Estargz}},
		want:     map[string]string{"tar": "false", "oci-mediatypes": "true", "compression": "estargz"},
		wantType: "estargz",
	}, {
		name:     "uncompressed",
		req:      Request{Compression: Compression{Type: Uncompressed}},
		want:     map[string]string{"tar": "false", "oci-mediatypes": "true", "compression": "uncompressed"},
		wantType: "uncompressed",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := exportAttrs(tc.req)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("attrs (-want +got):\n%s", d)
			}
			cfg, err := compression.ParseAttributes(got)
			if err != nil {
				t.Fatalf("BuildKit refuses the attributes: %v", err)
			}
			if cfg.Type.String() != tc.wantType || !cmp.Equal(cfg.Level, tc.wantLevel) || cfg.Force != tc.wantForce {
				t.Errorf("BuildKit parsed type %s, level %v, force %t; want %s, %v, %t",
					cfg.Type, cfg.Level, cfg.Force, tc.wantType, tc.wantLevel, tc.wantForce)
			}
		})
	}
}

func TestExportCompressionValidate(t *testing.T) {
	lvl := func(n int) *int { return &n }
	for _, tc := range []struct {
		c    Compression
		want error
	}{
		{Compression{}, nil},
		{Compression{Level: lvl(9)}, nil},
		{Compression{Type: Gzip, Level: lvl(0)}, nil},
		{Compression{Type: Zstd, Level: lvl(22), Force: true}, nil},
		{Compression{Type: Estargz, Level: lvl(5)}, nil},
		{Compression{Type: Uncompressed, Force: true}, nil},
		{Compression{Type: "lz4"}, ErrCompressionType},
		{Compression{Type: "GZIP"}, ErrCompressionType},
		{Compression{Level: lvl(10)}, ErrCompressionLevel},
		{Compression{Type: Gzip, Level: lvl(-1)}, ErrCompressionLevel},
		{Compression{Type: Zstd, Level: lvl(23)}, ErrCompressionLevel},
		{Compression{Type: Uncompressed, Level: lvl(1)}, ErrCompressionLevel},
	} {
		err := tc.c.Validate()
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%+v: Validate() = %v, want %v", tc.c, err, tc.want)
		}
	}
}
