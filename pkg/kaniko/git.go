package kaniko

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// gitOptions are kaniko's --git options.
type gitOptions struct {
	branch            string
	singleBranch      bool
	recurseSubmodules bool
	insecureSkipTLS   bool
}

// parseGitOptions reads kaniko's --git values, each a comma-separated list
// of key=value.
func parseGitOptions(values []string) (gitOptions, error) {
	var o gitOptions
	for _, v := range values {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				return o, fmt.Errorf("--git %s: want key=value", kv)
			}
			var b *bool
			switch k {
			case "branch":
				o.branch = val
				continue
			case "single-branch":
				b = &o.singleBranch
			case "recurse-submodules":
				b = &o.recurseSubmodules
			case "insecure-skip-tls":
				b = &o.insecureSkipTLS
			default:
				return o, fmt.Errorf("--git %s: unknown option (want branch, single-branch, recurse-submodules or insecure-skip-tls)", kv)
			}
			bv, err := strconv.ParseBool(val)
			if err != nil {
				return o, fmt.Errorf("--git %s: %s is not true or false", kv, val)
			}
			*b = bv
		}
	}
	return o, nil
}

// gitRemote is where a git context comes from: the URL without credentials
// (go-git writes it to .git/config), and the credentials apart.
type gitRemote struct {
	url  *url.URL
	auth *githttp.BasicAuth // nil: anonymous
	// authFrom names where auth came from, for errors.
	authFrom string
}

// String is the URL, which holds no credentials.
func (g gitRemote) String() string { return g.url.String() }

// authMethod is auth as go-git takes it: a nil *BasicAuth in the interface
// would not be "no auth".
func (g gitRemote) authMethod() transport.AuthMethod {
	if g.auth == nil {
		return nil
	}
	return g.auth
}

// gitContextURL turns kaniko's git context HOST/PATH[#REF[#COMMIT]] into
// the remote to clone: HTTPS unless GIT_PULL_METHOD=http, credentials from
// GIT_TOKEN (the user name with an empty password, as kaniko sends it), else
// GIT_USERNAME/GIT_PASSWORD, else the URL's own user:password, which is
// taken out of the URL.
func gitContextURL(spec string, getenv func(string) string) (g gitRemote, ref, commit string, err error) {
	repo, rest, _ := strings.Cut(spec, "#")
	ref, commit, _ = strings.Cut(rest, "#")
	scheme := "https"
	if getenv("GIT_PULL_METHOD") == "http" {
		scheme = "http"
	}
	u, err := url.Parse(scheme + "://" + repo)
	if err != nil || u.Host == "" {
		// url's error quotes the whole URL, which may hold a user:password.
		return g, "", "", fmt.Errorf("git context %s is not a valid URL", redactURL(scheme+"://"+repo))
	}
	g.url = u
	switch user, pass := getenv("GIT_USERNAME"), getenv("GIT_PASSWORD"); {
	case getenv("GIT_TOKEN") != "":
		g.auth, g.authFrom = &githttp.BasicAuth{Username: getenv("GIT_TOKEN")}, "GIT_TOKEN"
	case user != "" || pass != "":
		g.auth, g.authFrom = &githttp.BasicAuth{Username: user, Password: pass}, "GIT_USERNAME/GIT_PASSWORD"
	case u.User != nil:
		pass, _ := u.User.Password()
		g.auth, g.authFrom = &githttp.BasicAuth{Username: u.User.Username(), Password: pass}, "the context URL"
	}
	u.User = nil
	return g, ref, commit, nil
}

// cloneContext clones kaniko's git://HOST/PATH[#REF[#COMMIT]] context into
// a new directory with go-git. REF is a full ref (refs/heads/X,
// refs/tags/X, refs/pull/N/head), a name git would expand to one, or a
// commit; --git branch=B picks a branch or tag when there is no REF; COMMIT
// is checked out last. The credentials reach only go-git's HTTP requests:
// no URL, file, argument or error holds them.
func cloneContext(ctx context.Context, spec string, gitOpts []string, getenv func(string) string) (string, func(), error) {
	opts, err := parseGitOptions(gitOpts)
	if err != nil {
		return "", func() {}, err
	}
	g, ref, commit, err := gitContextURL(spec, getenv)
	if err != nil {
		return "", func() {}, err
	}
	// Listing first fails fast (no directory yet) on auth and reachability,
	// and names a missing ref before any download.
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{g.String()}})
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: g.authMethod(), InsecureSkipTLS: opts.insecureSkipTLS})
	if err != nil {
		return "", func() {}, g.errorf(err, "listing refs of %s", g)
	}
	target, err := resolveGitRef(refs, ref, opts.branch)
	if err != nil {
		return "", func() {}, fmt.Errorf("%s: %w", g, err)
	}

	dir, err := os.MkdirTemp("", "imgbuild-git-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	fail := func(err error) (string, func(), error) {
		cleanup()
		return "", func() {}, err
	}
	co := &git.CloneOptions{
		URL:             g.String(),
		Auth:            g.authMethod(),
		SingleBranch:    opts.singleBranch,
		InsecureSkipTLS: opts.insecureSkipTLS,
	}
	// Branches and tags are cloned as themselves; any other ref (a pull
	// request's head) or a commit is fetched after cloning HEAD, and then
	// checked out detached.
	var checkout string
	fetchRef := false
	switch {
	case target.hash != "":
		checkout, co.NoCheckout = target.hash, true
	case target.name.IsBranch() || target.name.IsTag():
		co.ReferenceName = target.name
	case target.name != plumbing.HEAD:
		fetchRef, co.NoCheckout = true, true
	}
	r, err := git.PlainCloneContext(ctx, dir, false, co)
	if err != nil {
		return fail(g.errorf(err, "cloning %s at %s", g, target))
	}
	if fetchRef {
		rs := config.RefSpec("+" + target.name + ":" + target.name)
		err := r.FetchContext(ctx, &git.FetchOptions{RefSpecs: []config.RefSpec{rs}, Auth: g.authMethod(), InsecureSkipTLS: opts.insecureSkipTLS})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return fail(g.errorf(err, "fetching %s from %s", target.name, g))
		}
		checkout = target.name.String()
	}
	if commit != "" {
		checkout = commit
	}
	if checkout != "" {
		if err := checkoutRevision(ctx, r, g, checkout, opts.insecureSkipTLS); err != nil {
			return fail(err)
		}
	}
	if opts.recurseSubmodules {
		if err := updateSubmodules(ctx, r, g, opts.insecureSkipTLS, int(git.DefaultSubmoduleRecursionDepth)); err != nil {
			return fail(err)
		}
	}
	return dir, cleanup, nil
}

// gitTarget is what to clone: a ref the remote has, or a commit.
type gitTarget struct {
	name plumbing.ReferenceName
	hash string
}

func (t gitTarget) String() string {
	if t.hash != "" {
		return "commit " + t.hash
	}
	return t.name.String()
}

// hexRev is what may be a commit hash, whole or abbreviated.
var hexRev = regexp.MustCompile(`^[0-9a-fA-F]{4,64}$`)

// resolveGitRef finds ref (else the branch option, else HEAD) among the
// remote's refs, the way git expands a name: refs/X, refs/tags/X,
// refs/heads/X... A ref that is no name there but looks like a commit hash
// is one, as in kaniko.
func resolveGitRef(refs []*plumbing.Reference, ref, branch string) (gitTarget, error) {
	has := map[plumbing.ReferenceName]bool{}
	for _, r := range refs {
		has[r.Name()] = true
	}
	if ref == "" && branch != "" {
		for _, n := range []plumbing.ReferenceName{plumbing.NewBranchReferenceName(branch), plumbing.NewTagReferenceName(branch)} {
			if has[n] {
				return gitTarget{name: n}, nil
			}
		}
		return gitTarget{}, fmt.Errorf("--git branch=%s: no branch or tag %q", branch, branch)
	}
	if ref == "" {
		if !has[plumbing.HEAD] {
			return gitTarget{}, errors.New("the repository has no HEAD to clone (give a #REF)")
		}
		return gitTarget{name: plumbing.HEAD}, nil
	}
	for _, rule := range plumbing.RefRevParseRules {
		if n := plumbing.ReferenceName(fmt.Sprintf(rule, ref)); has[n] {
			return gitTarget{name: n}, nil
		}
	}
	if hexRev.MatchString(ref) {
		return gitTarget{hash: strings.ToLower(ref)}, nil
	}
	return gitTarget{}, fmt.Errorf("no ref %q (no branch, tag or other ref of that name)", ref)
}

// checkoutRevision checks out rev (a commit hash, abbreviated or not, or a
// ref of the clone) detached. A full hash the clone lacks is fetched, for
// servers that serve any commit by its hash.
func checkoutRevision(ctx context.Context, r *git.Repository, g gitRemote, rev string, insecure bool) error {
	h, err := r.ResolveRevision(plumbing.Revision(rev))
	if err != nil && plumbing.IsHash(rev) {
		rs := config.RefSpec("+" + rev + ":refs/imgbuild/commit")
		if ferr := r.FetchContext(ctx, &git.FetchOptions{RefSpecs: []config.RefSpec{rs}, Auth: g.authMethod(), InsecureSkipTLS: insecure}); ferr == nil {
			h, err = r.ResolveRevision(plumbing.Revision(rev))
		}
	}
	if err != nil {
		return fmt.Errorf("%s: no commit %s in the cloned refs: %w", g, rev, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return err
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: *h, Force: true}); err != nil {
		return fmt.Errorf("%s: checking out %s: %w", g, rev, err)
	}
	return nil
}

// updateSubmodules checks out r's submodules at the commits r records,
// depth levels deep. Only http(s) submodules are fetched: a file path or
// file:// URL would copy the builder's own repositories into the context.
// The credentials go only to submodules on the context's scheme and host.
func updateSubmodules(ctx context.Context, r *git.Repository, g gitRemote, insecure bool, depth int) error {
	if depth == 0 {
		return nil
	}
	wt, err := r.Worktree()
	if err != nil {
		return err
	}
	subs, err := wt.Submodules()
	if err != nil {
		return fmt.Errorf("%s: reading .gitmodules: %w", g, err)
	}
	idx, err := r.Storer.Index()
	if err != nil {
		return err
	}
	for _, s := range subs {
		c := s.Config()
		e, err := idx.Entry(c.Path)
		if errors.Is(err, index.ErrEntryNotFound) {
			// As git does: .gitmodules names it, but no commit is recorded.
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: submodule %s: %w", g, c.Path, err)
		}
		if err := s.Init(); err != nil && !errors.Is(err, git.ErrSubmoduleAlreadyInitialized) {
			return fmt.Errorf("%s: submodule %s: %w", g, c.Path, err)
		}
		sr, err := s.Repository()
		if err != nil {
			return fmt.Errorf("%s: submodule %s: %w", g, c.Path, err)
		}
		origin, err := sr.Remote(git.DefaultRemoteName)
		if err != nil {
			return fmt.Errorf("%s: submodule %s: %w", g, c.Path, err)
		}
		su, err := url.Parse(origin.Config().URLs[0])
		if err != nil || (su.Scheme != "https" && su.Scheme != "http") || su.Host == "" {
			return fmt.Errorf("%s: submodule %s: %s is not an http(s) URL", g, c.Path, redactURL(origin.Config().URLs[0]))
		}
		sg := gitRemote{url: su}
		if su.Scheme == g.url.Scheme && su.Host == g.url.Host {
			sg.auth, sg.authFrom = g.auth, g.authFrom
		}
		err = sr.FetchContext(ctx, &git.FetchOptions{Auth: sg.authMethod(), InsecureSkipTLS: insecure})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return sg.errorf(err, "submodule %s of %s: fetching %s", c.Path, g, sg)
		}
		if err := checkoutRevision(ctx, sr, sg, e.Hash.String(), insecure); err != nil {
			return fmt.Errorf("submodule %s of %s: %w", c.Path, g, err)
		}
		if err := updateSubmodules(ctx, sr, sg, insecure, depth-1); err != nil {
			return err
		}
	}
	return nil
}

// errorf wraps a go-git error as "what: why", saying what the usual
// failures mean. The URL holds no credentials, and the server's own text
// is redacted in case it quotes a URL that does.
func (g gitRemote) errorf(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	var why string
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired) && g.auth != nil:
		why = "the server refused the credentials from " + g.authFrom
	case errors.Is(err, transport.ErrAuthenticationRequired):
		why = "authentication required: set GIT_TOKEN, or GIT_USERNAME and GIT_PASSWORD"
	case errors.Is(err, transport.ErrAuthorizationFailed) && g.auth != nil:
		why = "access denied to the credentials from " + g.authFrom
	case errors.Is(err, transport.ErrAuthorizationFailed):
		why = "access denied"
	case errors.Is(err, transport.ErrRepositoryNotFound):
		why = "repository not found"
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		why = "the repository is empty"
	}
	return &gitError{what: what, why: why, err: err}
}

// gitError is a go-git error in imgbuild's words: what was being done, and
// why it failed when that is one of the usual failures. go-git's own text
// then stays out (it may quote the server's error page).
type gitError struct {
	what, why string
	err       error
}

// Error implements error.
func (e *gitError) Error() string {
	if e.why != "" {
		return e.what + ": " + e.why
	}
	return e.what + ": " + redactURL(e.err.Error())
}

// Unwrap gives go-git's error, for errors.Is.
func (e *gitError) Unwrap() error { return e.err }
