package kaniko

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzContextSpec: kaniko's --context splits into a known kind, a git
// context's credentials never survive redaction, and neither does a
// password in any URL of an error message.
func FuzzContextSpec(f *testing.F) {
	for _, s := range []string{"dir:///workspace", "/workspace", "tar://stdin", "tar:///ctx.tar.gz", "git://github.com/o/r.git#refs/heads/main",
		"git://github.com/o/r#main#0123abc", "s3://bucket/ctx.tgz", "git://u:p@host/r", "git://[::1/r", "git://host/r#:../../"} {
		f.Add(s, "tok3n-secret")
	}
	f.Fuzz(func(t *testing.T, spec, token string) {
		kind, rest, err := contextSource(spec)
		if err != nil {
			if strings.HasPrefix(spec, "dir://") || strings.HasPrefix(spec, "tar://") || strings.HasPrefix(spec, "git://") {
				t.Errorf("%q refused: %v", spec, err)
			}
			return
		}
		if !slices.Contains([]string{"dir", "tar", "git"}, kind) || !strings.HasSuffix(spec, rest) {
			t.Errorf("%q -> %q %q", spec, kind, rest)
		}
		if kind != "git" {
			return
		}
		env := map[string]string{"GIT_TOKEN": token}
		g, _, _, err := gitContextURL(rest, func(k string) string { return env[k] })
		secret := len(token) >= 6 && strings.Trim(token, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
		if err != nil {
			// The error names the spec: a token that is part of it is no leak.
			if secret && !strings.Contains(spec, token) && strings.Contains(err.Error(), token) {
				t.Errorf("error for %q names the token: %v", spec, err)
			}
			return
		}
		// The URL go-git gets (and writes to .git/config) has no
		// credentials: they travel in the auth apart.
		if g.url.User != nil {
			t.Errorf("%q: the clone URL %s keeps user info", spec, g)
		}
		if token != "" && (g.auth == nil || g.auth.Username != token || g.auth.Password != "") {
			t.Errorf("%q: GIT_TOKEN gives auth %+v, want the token as user name and no password", spec, g.auth)
		}
		if secret {
			// The token may also spell part of the host or path once the
			// URL escapes them: what redaction must remove is only the
			// occurrences credentials add.
			withCreds := *g.url
			withCreds.User = url.UserPassword(token, "x-oauth-basic")
			for _, wrap := range [][2]string{{"", ""}, {"fatal: unable to access '", "': 403"}, {"(", ")"}} {
				s := wrap[0] + withCreds.String() + wrap[1]
				if got, want := strings.Count(redactURL(s), token), strings.Count(wrap[0]+g.String()+wrap[1], token); got > want {
					t.Errorf("redactURL(%q) keeps the token: %q", s, redactURL(s))
				}
			}
		}
	})
}

// FuzzRedactURL: no password of a URL, wherever it sits in a message,
// survives redaction.
func FuzzRedactURL(f *testing.F) {
	f.Add("fatal: unable to access '", "user", "s3cr3tpass", "github.com", "/o/r/': 403")
	f.Add("", "", "s3cr3tpass", "host:8443", "")
	f.Add("(", "oauth2", "s3cr3tpass", "10.0.0.1", ")\n")
	f.Fuzz(func(t *testing.T, before, user, pass, host, after string) {
		if len(pass) < 6 || strings.Trim(pass, "abcdefghijklmnopqrstuvwxyz0123456789") != "" ||
			strings.ContainsAny(host, "/@?#'\" \t\n") || strings.Contains(before+user+host+after, pass) {
			return
		}
		s := before + "https://" + url.PathEscape(user) + ":" + pass + "@" + host + after
		if got := redactURL(s); strings.Contains(got, pass) {
			t.Errorf("redactURL(%q) = %q keeps the password", s, got)
		}
	})
}
