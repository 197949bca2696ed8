package cmd

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgbuild/imgbuild/pkg/builder"
)

func TestParseCacheEntry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		export  bool
		want    builder.CacheEntry
		wantErr string
	}{
		{in: "reg.example/app:cache", want: builder.CacheEntry{Type: "registry", Attrs: map[string]string{"ref": "reg.example/app:cache"}}},
		{in: "type=registry,ref=r/a:c,mode=max", export: true, want: builder.CacheEntry{Type: "registry", Attrs: map[string]string{
			"ref": "r/a:c", "mode": "max", "image-manifest": "true", "oci-mediatypes": "true"}}},
		{in: "type=registry,ref=r/a:c,image-manifest=false", export: true, want: builder.CacheEntry{Type: "registry", Attrs: map[string]string{
			"ref": "r/a:c", "mode": "min", "image-manifest": "false", "oci-mediatypes": "true"}}},
		{in: "type=local,src=/c", want: builder.CacheEntry{Type: "local", Attrs: map[string]string{"src": "/c"}}},
		{in: "type=local,dest=/c", export: true, want: builder.CacheEntry{Type: "local", Attrs: map[string]string{"dest": "/c", "mode": "min"}}},
		{in: "type=inline", export: true, want: builder.CacheEntry{Type: "inline", Attrs: map[string]string{"mode": "min"}}},
		{in: "type=inline", wantErr: "export only"},
		{in: "type=registry", wantErr: "needs ref="},
		{in: "type=local,dest=/c", wantErr: "needs src="},
		{in: "type=local,src=/c", export: true, wantErr: "needs dest="},
		{in: "type=registry,ref=r/a,mode=all", export: true, wantErr: "want min or max"},
		{in: "type=gha", wantErr: "unknown type"},
		{in: "ref=r/a", wantErr: "missing type="},
		{in: "type=registry,bogus", wantErr: "want key=value"},
	} {
		got, err := parseCacheEntry(tc.in, tc.export)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseCacheEntry(%q, %v) error = %v, want %q", tc.in, tc.export, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseCacheEntry(%q, %v): %v", tc.in, tc.export, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("parseCacheEntry(%q, %v) (-want +got):\n%s", tc.in, tc.export, d)
		}
	}
}

func TestParseCacheMountsStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		export  bool
		want    builder.CacheMountsStore
		wantErr string
	}{
		{in: "", want: builder.CacheMountsStore{}},
		{in: "/ci/cache", want: builder.CacheMountsStore{Dir: "/ci/cache"}},
		{in: "dir=with=equals", want: builder.CacheMountsStore{Dir: "dir=with=equals"}},
		{in: "type=registry,ref=reg.example/m:1", want: builder.CacheMountsStore{Ref: "reg.example/m:1"}},
		{in: "type=registry,ref=reg.example/m:1", export: true, want: builder.CacheMountsStore{Ref: "reg.example/m:1"}},
		{in: "type=local,src=/c", want: builder.CacheMountsStore{Dir: "/c"}},
		{in: "type=local,dest=/c", export: true, want: builder.CacheMountsStore{Dir: "/c"}},
		{in: "type=local,dest=/c", wantErr: `key "dest" does not apply to type=local (it takes src=)`},
		{in: "type=local,src=/c", export: true, wantErr: `key "src" does not apply`},
		{in: "type=registry", wantErr: "type=registry needs ref="},
		{in: "type=registry,ref=REG/X:1", wantErr: "ref=REG/X:1"},
		{in: "type=registry,ref=r.example/a,mode=max", export: true, wantErr: `key "mode" does not apply`},
		{in: "type=gha", wantErr: "unknown type"},
		{in: "type=registry,ref=a,ref=b", wantErr: "given twice"},
	} {
		got, err := parseCacheMountsStore(tc.in, tc.export, nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseCacheMountsStore(%q, %v) error = %v, want %q", tc.in, tc.export, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseCacheMountsStore(%q, %v): %v", tc.in, tc.export, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("parseCacheMountsStore(%q, %v) (-want +got):\n%s", tc.in, tc.export, d)
		}
	}
}

func TestCacheMountBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mount, total string
		want         builder.CacheMounts
		wantErr      string
	}{
		{want: builder.CacheMounts{}},
		{mount: "1GB", total: "off", want: builder.CacheMounts{MaxMountSize: 1 << 30, MaxSize: builder.NoLimit}},
		{mount: "0", wantErr: "--max-cache-mount-size 0: want a positive size"},
		{total: "lots", wantErr: "--max-cache-mounts-size"},
	} {
		c := cacheFlags{mountMaxSize: tc.mount, mountsMaxSize: tc.total}
		got, err := c.cacheMounts(nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q, %q: error = %v, want %q", tc.mount, tc.total, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q, %q: %v", tc.mount, tc.total, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%q, %q (-want +got):\n%s", tc.mount, tc.total, d)
		}
	}
}
