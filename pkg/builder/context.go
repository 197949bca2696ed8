package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	gofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/sirupsen/logrus"
	"github.com/tonistiigi/fsutil"
)

// buildContext is what the Dockerfile frontend reads before the build,
// resolved on the host: the Dockerfile and the ignore file that applies
// (<Dockerfile>.dockerignore, else the context's .dockerignore).
//
// The frontend reads them from its snapshot of a local mount, where a
// symlink resolves inside the mount: a link to a file elsewhere in the
// context (or by an absolute host path) then points at nothing, the
// Dockerfile is "not found" and the ignore file is taken as absent. Build
// therefore hands the frontend regular files with the content found here
// when a link was followed.
type buildContext struct {
	ctxAbs, ctxReal string
	// linked is set when a file read was reached through a symlink.
	linked bool
	// ignore is the ignore file's content; nil if there is none.
	ignore []byte
	// ignoreName is the ignore file's path, for messages.
	ignoreName string
	excludes   []string
}

// newBuildContext checks the context dir and resolves its real path.
func newBuildContext(dir string) (*buildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", dir)
	}
	return &buildContext{ctxAbs: abs, ctxReal: real}, nil
}

// within reports whether p is dir or below it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// readFile reads p, following symlinks. A file the path places in the
// context must resolve inside it: the context is untrusted input, and a
// link out of it would read the build machine's files. A path outside the
// context is one the user gave, and is followed wherever it goes. ok is
// false when p does not exist.
func (c *buildContext) readFile(p string) (data []byte, ok bool, err error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, false, err
	}
	if _, err := os.Lstat(abs); errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	real, err := filepath.EvalSymlinks(abs)
	inCtx := within(c.ctxAbs, abs) || within(c.ctxReal, abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("%s is %s, which does not exist", p, c.describeLink(abs, ""))
	case err != nil:
		return nil, false, err
	case inCtx && !within(c.ctxReal, real):
		return nil, false, fmt.Errorf("%s is %s, outside the build context %s", p, c.describeLink(abs, real), c.ctxAbs)
	}
	c.linked = c.linked || real != abs
	// Stat first: reading a FIFO or a device would block or never end.
	fi, err := os.Stat(real)
	if err != nil {
		return nil, false, err
	}
	if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%s is not a regular file (%s)", p, fi.Mode().Type())
	}
	data, err = os.ReadFile(real)
	return data, err == nil, err
}

// describeLink says where the symlink at abs (or a symlinked directory on
// its path) leads: real, its resolved path, when known.
func (c *buildContext) describeLink(abs, real string) string {
	target, err := os.Readlink(abs)
	if err != nil {
		// Not a link itself: a directory on its path is.
		return "reached through a symlinked directory, at " + real
	}
	if real == "" || target == real {
		return "a symlink to " + target
	}
	return fmt.Sprintf("a symlink to %s (%s)", target, real)
}

// readDockerfile reads the Dockerfile at p.
func (c *buildContext) readDockerfile(p string) ([]byte, error) {
	data, ok, err := c.readFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("reading Dockerfile: %s does not exist", p)
	}
	return data, nil
}

// readIgnore finds the ignore file as BuildKit does: <dockerfile>.dockerignore
// next to the Dockerfile (dockerfile is "" when it came from stdin), else
// .dockerignore in the context, and parses it.
func (c *buildContext) readIgnore(dockerfile string) error {
	var names []string
	if dockerfile != "" {
		names = append(names, dockerfile+".dockerignore")
	}
	names = append(names, filepath.Join(c.ctxAbs, ".dockerignore"))
	for _, n := range names {
		data, ok, err := c.readFile(n)
		if err != nil {
			return fmt.Errorf("reading ignore file: %w", err)
		}
		if !ok {
			continue
		}
		// Parsed here so that an error names the file, not the name it is
		// handed to the frontend under.
		excludes, err := ignorefile.ReadAll(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("parsing %s: %w", n, err)
		}
		c.ignore, c.ignoreName, c.excludes = data, n, excludes
		return nil
	}
	return nil
}

// skipSockets wraps the context's FS so that UNIX sockets are left out with
// a warning, as docker does: fsutil clears the socket bit and would send
// each as an empty regular file. Sockets the ignore file excludes are left
// out without one.
func (c *buildContext) skipSockets(inner fsutil.FS, log logrus.FieldLogger) fsutil.FS {
	pm, err := patternmatcher.New(c.excludes)
	if err != nil {
		// Already parsed by ignorefile; the frontend reports bad patterns.
		pm = nil
	}
	return &socketFilterFS{FS: inner, dir: c.ctxAbs, ignore: pm, log: log}
}

type socketFilterFS struct {
	fsutil.FS
	dir    string
	ignore *patternmatcher.PatternMatcher
	log    logrus.FieldLogger
	// warned holds the paths already reported: BuildKit walks the context
	// once per local source that reads it.
	warned sync.Map
}

var _ fsutil.FS = (*socketFilterFS)(nil)

// Walk implements fsutil.FS.
func (fs *socketFilterFS) Walk(ctx context.Context, target string, fn gofs.WalkDirFunc) error {
	return fs.FS.Walk(ctx, target, func(p string, entry gofs.DirEntry, err error) error {
		// The walk's directory entry still has the type readdir gave.
		if err != nil || entry == nil || entry.Type()&gofs.ModeSocket == 0 {
			return fn(p, entry, err)
		}
		if fs.ignore != nil {
			if ignored, _ := fs.ignore.MatchesOrParentMatches(p); ignored {
				return nil
			}
		}
		if _, seen := fs.warned.LoadOrStore(p, true); !seen {
			fs.log.Warnf("skipping socket %s in the build context: a socket cannot be copied into an image", filepath.Join(fs.dir, p))
		}
		return nil
	})
}

// Open implements fsutil.FS.
func (fs *socketFilterFS) Open(p string) (io.ReadCloser, error) { return fs.FS.Open(p) }
