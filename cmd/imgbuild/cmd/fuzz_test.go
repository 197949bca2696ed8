package cmd

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Fuzz targets for the flag parsers imgbuild owns. hack/fuzz.sh runs each
// one briefly; as plain tests they run their seed corpus.

// csvField quotes a key=value pair the way csvvalue reads it back.
func csvField(k, v string) string {
	f := k + "=" + v
	if strings.ContainsAny(f, `,"`+"\r\n") || strings.TrimSpace(f) != f {
		return `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
	}
	return f
}

// FuzzBuildArgs: a --build-arg or --label that parses comes back as the
// same KEY=VALUE.
func FuzzBuildArgs(f *testing.F) {
	for _, s := range []string{"A=1", "A", "=x", "A==b", "A=", "PATH=/x:/y", "K=v=w", "\x00=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bo := &buildOptions{buildArgs: []string{s}, labels: []string{s}, progress: "plain"}
		// Every variable is set, but SOURCE_DATE_EPOCH, which plan reads
		// for itself and checks.
		p, err := bo.plan(".", strings.NewReader(""), func(k string) (string, bool) { return "env-" + k, k != "SOURCE_DATE_EPOCH" })
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Errorf("error %q does not name the value %q", err, s)
			}
			return
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			v = "env-" + k
		}
		if got := p.req.BuildArgs[k]; got != v || len(p.req.BuildArgs) != 1 {
			t.Errorf("--build-arg %q gave %v, want %s=%s", s, p.req.BuildArgs, k, v)
		}
		if ok && (p.req.Labels[k] != v || len(p.req.Labels) != 1) {
			t.Errorf("--label %q gave %v", s, p.req.Labels)
		}
	})
}

// FuzzParseOutput: an --output that parses, written back as CSV, parses
// to the same output.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{"type=registry", "type=oci,dest=out", "type=docker,dest=-", "type=tar,dest=a.tar,name=r/a:1",
		`"type=oci,dest=a,b"`, "type=registry,name=r/a:1,name=r/b:2", "push=true", "type=oci,dest=-", "dir", "type=x",
		"type=oci,dest=d,tar=false", "type=image,push=false", "type=image,name=r/a:1,push=true", "-", "type=local,dest=out", `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOutput(s, nil)
		if err != nil {
			return
		}
		names := make([]string, len(o.refs))
		for i, r := range o.refs {
			names[i] = r.Name()
		}
		fields := []string{csvField("type", o.typ)}
		if o.dest != "" {
			fields = append(fields, csvField("dest", o.dest))
		}
		if len(names) > 0 {
			fields = append(fields, csvField("name", strings.Join(names, ",")))
		}
		if o.dir {
			fields = append(fields, "tar=false")
		}
		if o.typ == "image" {
			fields = append(fields, "push="+strconv.FormatBool(o.push))
		}
		again, err := parseOutput(strings.Join(fields, ","), nil)
		if err != nil {
			t.Fatalf("%q parsed, its re-encoding %q does not: %v", s, strings.Join(fields, ","), err)
		}
		names2 := make([]string, len(again.refs))
		for i, r := range again.refs {
			names2[i] = r.Name()
		}
		if again.typ != o.typ || again.dest != o.dest || again.dir != o.dir || again.push != o.push || !slices.Equal(names, names2) {
			t.Errorf("%q -> %+v %v, re-parsed %+v %v", s, o, names, again, names2)
		}
	})
}

// FuzzParseCacheEntry: a --cache-from/--cache-to that parses, written back
// as CSV, parses to the same entry (defaults included: they are idempotent).
func FuzzParseCacheEntry(f *testing.F) {
	for _, s := range []string{"reg/app:cache", "type=registry,ref=r/a:c,mode=max", "type=local,src=/c", "type=local,dest=/c",
		"type=inline", `"type=local,dest=/a,b"`, "type=registry,ref=r,mode=maybe", "TYPE=local,DEST=x", "type=gha"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, export bool) {
		e, err := parseCacheEntry(s, export)
		if err != nil {
			return
		}
		fields := []string{csvField("type", e.Type)}
		for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
			fields = append(fields, csvField(k, e.Attrs[k]))
		}
		enc := strings.Join(fields, ",")
		again, err := parseCacheEntry(enc, export)
		if err != nil {
			t.Fatalf("%q parsed, its re-encoding %q does not: %v", s, enc, err)
		}
		if d := cmp.Diff(e, again); d != "" {
			t.Errorf("%q re-parsed via %q differs (-first +again):\n%s", s, enc, d)
		}
	})
}

// FuzzRegistryMaps: --registry-map and --registry-mirror values that parse
// give every ORIG its mirrors, in order.
func FuzzRegistryMaps(f *testing.F) {
	for _, s := range []string{"docker.io=mirror.gcr.io", "a=b;c=d", "a=b;a=c", "=x", "a=", "a=b;;", "index.docker.io=m:5000/path"} {
		f.Add(s, "mirror.example")
	}
	f.Fuzz(func(t *testing.T, m, mirror string) {
		r := registryFlags{maps: []string{m}, mirrors: []string{mirror}}
		pull, err := r.hosts()
		if err != nil {
			return
		}
		want := map[string][]string{"docker.io": {mirror}}
		for _, pair := range strings.Split(m, ";") {
			orig, to, _ := strings.Cut(pair, "=")
			want[orig] = append(want[orig], to)
		}
		got := map[string][]string{}
		for h, c := range pull {
			got[h] = c.Mirrors
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("--registry-map %q --registry-mirror %q (-want +got):\n%s", m, mirror, d)
		}
	})
}
