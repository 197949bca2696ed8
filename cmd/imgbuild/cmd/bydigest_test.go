package cmd

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPlanPushByDigest checks what push-by-digest=true and
// name-canonical=true turn into before any build: repositories to push to
// by digest, and no tag pushed.
func TestPlanPushByDigest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		args      []string
		byDigest  []string
		push      []string
		canonical bool
		err       string
	}{
		{name: "buildx spelling", args: []string{"-o", "type=image,name=reg.example/app,push-by-digest=true,name-canonical=true,push=true"},
			byDigest: []string{"reg.example/app"}, canonical: true},
		{name: "push implied", args: []string{"-o", "type=image,name=reg.example/app,push-by-digest=true"},
			byDigest: []string{"reg.example/app"}},
		{name: "tag in name dropped", args: []string{"-o", "type=registry,name=reg.example/app:v1,push-by-digest=true"},
			byDigest: []string{"reg.example/app"}},
		{name: "repositories from --tag", args: []string{"-t", "reg.example/a:v1", "-t", "reg.example/a:v2", "-t", "reg.example/b:v1", "-o", "type=image,push-by-digest=true"},
			byDigest: []string{"reg.example/a", "reg.example/b"}},
		{name: "--push still tags", args: []string{"-t", "reg.example/a:v1", "--push", "-o", "type=image,name=reg.example/c,push-by-digest=true"},
			byDigest: []string{"reg.example/a", "reg.example/c"}, push: []string{"reg.example/a:v1"}},
		{name: "push=false", args: []string{"-o", "type=image,name=reg.example/app,push-by-digest=true,push=false"}, err: "push=false"},
		{name: "no name", args: []string{"-o", "type=image,push-by-digest=true"}, err: "push-by-digest=true needs name=REPOSITORY or --tag"},
		{name: "bad value", args: []string{"-o", "type=image,name=reg.example/app,push-by-digest=yes please"}, err: `push-by-digest="yes please"`},
		{name: "not for oci", args: []string{"-o", "type=oci,dest=x.tar,push-by-digest=true"}, err: `key "push-by-digest" does not apply to type=oci`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bo := &buildOptions{}
			cmd := newBuildCmdWith(&rootOptions{}, bo)
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			p, err := bo.plan(t.TempDir(), nil, func(string) (string, bool) { return "", false })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var byDigest, push []string
			for _, r := range p.byDigest {
				byDigest = append(byDigest, r.Name())
			}
			for _, r := range p.push {
				push = append(push, r.Name())
			}
			if diff := cmp.Diff(tc.byDigest, byDigest); diff != "" {
				t.Errorf("by digest (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.push, push); diff != "" {
				t.Errorf("tags pushed (-want +got):\n%s", diff)
			}
			if p.canonical != tc.canonical {
				t.Errorf("canonical = %t, want %t", p.canonical, tc.canonical)
			}
		})
	}
}
