package builder

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSecrets: a --secret value either parses or fails naming itself;
// hack/fuzz.sh runs it, plain go test runs the seeds.
func FuzzParseSecrets(f *testing.F) {
	dir := f.TempDir()
	src := filepath.Join(dir, "tok")
	if err := os.WriteFile(src, []byte("s3cr3t"), 0o600); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"id=tok,src=" + src, "id=tok,env=HOME", "id=t,type=env,src=HOME", "id=", "src=" + src,
		"id=x,src=/does/not/exist", "id=a,value=b", `"id=a,b"`, "type=file,id=t,source=" + src, "novalue"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := parseSecrets([]string{s})
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Errorf("error %q does not name the value %q", err, s)
			}
			return
		}
		if sp == nil {
			t.Errorf("%q: no error and no provider", s)
		}
	})
}
