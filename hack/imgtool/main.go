package main

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

const usage = `usage:
  imgtool push-busybox REF          push the test busybox image to REF
  imgtool push-rootfs TAR REF       push a one-layer image made from a rootfs tarball
                                    (e.g. debootstrap output) to REF
  imgtool show REF [flags]          show an image's config, history and layers
    --cat PATH                      print PATH from the flattened filesystem instead
    --files=false                   do not list each layer's files
    --max-files N                   list at most N files per layer
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "imgtool: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("no command\n" + usage) //nolint:staticcheck // the usage follows the message
	}
	switch args[0] {
	case "push-busybox":
		if len(args) != 2 {
			return errors.New("push-busybox takes one REF\n" + usage) //nolint:staticcheck // the usage follows the message
		}
		img, err := testutil.BusyboxImage()
		if err != nil {
			return err
		}
		if err := testutil.Push(ctx, args[1], img); err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("computing digest: %w", err)
		}
		fmt.Fprintf(out, "%s@%s\n", args[1], d)
		return nil
	case "push-rootfs":
		if len(args) != 3 {
			return errors.New("push-rootfs takes a TAR and a REF\n" + usage) //nolint:staticcheck // the usage follows the message
		}
		return pushRootfs(ctx, args[1], args[2], out)
	case "show":
		return show(ctx, args[1:], out)
	case "-h", "--help", "help":
		fmt.Fprint(out, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func show(ctx context.Context, args []string, out io.Writer) error {
	fset := flag.NewFlagSet("show", flag.ContinueOnError)
	cat := fset.String("cat", "", "print this file from the flattened filesystem")
	files := fset.Bool("files", true, "list each layer's files")
	maxFiles := fset.Int("max-files", 0, "list at most this many files per layer (0: all)")
	// Accept flags before and after REF.
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() == 0 {
		return errors.New("show takes a REF\n" + usage) //nolint:staticcheck // the usage follows the message
	}
	refStr := fset.Arg(0)
	if err := fset.Parse(fset.Args()[1:]); err != nil {
		return err
	}
	if fset.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fset.Args(), usage)
	}

	ref, err := testutil.ParseRef(refStr)
	if err != nil {
		return err
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", refStr, err)
	}
	img, err := desc.Image()
	if err != nil {
		return fmt.Errorf("reading image %s: %w", refStr, err)
	}
	if *cat != "" {
		return catFile(img, *cat, out)
	}

	w := &errWriter{w: out}
	w.printf("reference:  %s\n", refStr)
	if desc.MediaType.IsIndex() {
		w.printf("index:      %s (%s)\n", desc.Digest, desc.MediaType)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("computing digest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("reading media type: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	platform := cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		platform += "/" + cfg.Variant
	}
	w.printf("digest:     %s\n", digest)
	w.printf("media type: %s\n", mt)
	w.printf("platform:   %s\n", platform)
	w.printf("created:    %s\n", cfg.Created.UTC())

	c := cfg.Config
	w.printf("config:\n")
	w.printf("  Env:          %q\n", c.Env)
	w.printf("  Entrypoint:   %q\n", c.Entrypoint)
	w.printf("  Cmd:          %q\n", c.Cmd)
	w.printf("  WorkingDir:   %q\n", c.WorkingDir)
	w.printf("  User:         %q\n", c.User)
	w.printf("  Labels:       %s\n", sortedMap(c.Labels))
	ports := make([]string, 0, len(c.ExposedPorts))
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	w.printf("  ExposedPorts: %q\n", ports)

	w.printf("history:\n")
	for i, h := range cfg.History {
		empty := ""
		if h.EmptyLayer {
			empty = " (no layer)"
		}
		w.printf("  [%d] %s%s\n", i, h.CreatedBy, empty)
	}

	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading layers: %w", err)
	}
	w.printf("layers:\n")
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("reading layer %d digest: %w", i, err)
		}
		size, err := l.Size()
		if err != nil {
			return fmt.Errorf("reading layer %d size: %w", i, err)
		}
		lmt, err := l.MediaType()
		if err != nil {
			return fmt.Errorf("reading layer %d media type: %w", i, err)
		}
		w.printf("  [%d] %s %d bytes %s\n", i, d, size, lmt)
		if *files {
			if err := listLayer(w, l, *maxFiles); err != nil {
				return fmt.Errorf("listing layer %d: %w", i, err)
			}
		}
	}
	return w.err
}

// pushRootfs pushes a linux image for this machine's architecture whose only
// layer is the tarball at tarPath (gzip-compressed on the way), with Debian's
// default PATH.
func pushRootfs(ctx context.Context, tarPath, ref string, out io.Writer) error {
	layer, err := tarball.LayerFromFile(tarPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("reading %s: %w", tarPath, err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{CreatedBy: "imgtool push-rootfs " + path.Base(tarPath)},
	})
	if err != nil {
		return fmt.Errorf("appending %s: %w", tarPath, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"bash"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return fmt.Errorf("setting config: %w", err)
	}
	if err := testutil.Push(ctx, ref, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return fmt.Errorf("computing digest: %w", err)
	}
	fmt.Fprintf(out, "%s@%s\n", ref, d)
	return nil
}

// listLayer prints one line per tar entry, at most maxFiles when positive,
// showing whiteouts as deletions.
func listLayer(w *errWriter, l v1.Layer, maxFiles int) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	n := 0
	for ; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if maxFiles > 0 && n >= maxFiles {
			continue // keep counting
		}
		dir, base := path.Split(h.Name)
		switch {
		case base == ".wh..wh..opq":
			w.printf("      opaque: %s (lower layers' contents hidden)\n", dir)
		case strings.HasPrefix(base, ".wh."):
			w.printf("      deleted: %s\n", dir+strings.TrimPrefix(base, ".wh."))
		default:
			name := h.Name
			switch h.Typeflag {
			case tar.TypeSymlink:
				name += " -> " + h.Linkname
			case tar.TypeLink:
				name += " => " + h.Linkname
			}
			w.printf("      %-11s %9s %8d  %s\n", h.FileInfo().Mode(), fmt.Sprintf("%d:%d", h.Uid, h.Gid), h.Size, name)
		}
	}
	if maxFiles > 0 && n > maxFiles {
		w.printf("      ... and %d more\n", n-maxFiles)
	}
	return nil
}

// catFile copies one regular file of the flattened filesystem to out.
func catFile(img v1.Image, p string, out io.Writer) error {
	want := strings.TrimPrefix(path.Clean("/"+p), "/")
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		if err != nil {
			return fmt.Errorf("reading filesystem: %w", err)
		}
		if strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/") != want {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if _, err := io.Copy(out, tr); err != nil {
				return fmt.Errorf("printing %s: %w", p, err)
			}
			return nil
		case tar.TypeSymlink:
			return fmt.Errorf("%s is a symlink to %s", p, h.Linkname)
		default:
			return fmt.Errorf("%s is not a regular file (%s)", p, h.FileInfo().Mode())
		}
	}
}

func sortedMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// errWriter keeps the first write error so printing code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}
