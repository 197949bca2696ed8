package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/imgbuild/imgbuild/internal/podsim"
)

// pod is `benchtool pod create|run`: the bench's builds in a simulated pod
// of a hack/k8s manifest, derived as the e2e tests derive theirs.
func pod(args []string) error {
	if len(args) == 0 {
		return errors.New("pod create|run")
	}
	switch args[0] {
	case "create":
		return podCreate(args[1:])
	case "run":
		fs := flag.NewFlagSet("pod run", flag.ContinueOnError)
		runc := fs.String("runc", "runc", "runc binary")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("pod run [--runc PATH] BUNDLE")
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return podsim.RunBundle(ctx, *runc, fs.Arg(0), os.Stdout, os.Stderr)
	default:
		return fmt.Errorf("pod: unknown command %q", args[0])
	}
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// podCreate writes a bundle: config.json for the manifest's pod running
// the command line after --, the root filesystem, the volumes' directories
// and the workspace's files.
func podCreate(args []string) error {
	fs := flag.NewFlagSet("pod create", flag.ContinueOnError)
	manifest := fs.String("manifest", "", "path of the Job (hack/k8s/*.yaml) whose pod to simulate")
	dir := fs.String("dir", "", "bundle directory to create (must not exist)")
	layoutDir := fs.String("layout", "", "root filesystem and image config: the one image of this OCI layout")
	rootfs := fs.String("rootfs", "", "root filesystem: a copy of this directory (image config from --env and --workdir)")
	workdir := fs.String("workdir", "", "the image's working directory (with --rootfs)")
	workspace := fs.String("workspace", "", "copy this directory's files into the pod's workspace volume")
	var env, secrets stringList
	fs.Var(&env, "env", "the image's KEY=VALUE environment (with --rootfs; repeatable)")
	fs.Var(&secrets, "secret", "NAME/KEY=VALUE: data of a Secret the manifest's volumes use (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *manifest == "" || *dir == "" || fs.NArg() == 0 || (*layoutDir == "") == (*rootfs == "") {
		return errors.New("pod create --manifest JOB.yaml --dir BUNDLE (--layout OCI_DIR | --rootfs DIR) [flags] -- ARGV")
	}
	opts := []podsim.Option{podsim.WithCommand(fs.Args()...)}
	data := map[string]map[string]string{}
	for _, s := range secrets {
		nk, v, ok := strings.Cut(s, "=")
		name, key, ok2 := strings.Cut(nk, "/")
		if !ok || !ok2 {
			return fmt.Errorf("--secret %q: want NAME/KEY=VALUE", s)
		}
		if data[name] == nil {
			data[name] = map[string]string{}
		}
		data[name][key] = v
	}
	for name, d := range data {
		opts = append(opts, podsim.WithSecret(name, d))
	}

	img := podsim.Image{Env: env, WorkingDir: *workdir}
	var layoutImg v1.Image
	if *layoutDir != "" {
		var err error
		if layoutImg, err = onlyImage(*layoutDir); err != nil {
			return err
		}
		cfg, err := layoutImg.ConfigFile()
		if err != nil {
			return fmt.Errorf("reading the image config in %s: %w", *layoutDir, err)
		}
		img = podsim.ImageOf(cfg.Config)
	}

	if err := os.Mkdir(*dir, 0o755); err != nil {
		return err
	}
	p, err := podsim.DeriveFile(*manifest, *dir, img, opts...)
	if err != nil {
		return err
	}
	if layoutImg != nil {
		err = p.Unpack(layoutImg)
	} else {
		err = p.CopyRootFS(*rootfs)
	}
	if err != nil {
		return err
	}
	if *workspace != "" {
		ws, ok := p.Volumes["workspace"]
		if !ok {
			return fmt.Errorf("%s has no workspace volume", *manifest)
		}
		if err := p.CopyDir(*workspace, ws); err != nil {
			return fmt.Errorf("copying %s into the workspace: %w", *workspace, err)
		}
	}
	return p.WriteConfig()
}

// onlyImage returns the image of an OCI layout that holds one.
func onlyImage(dir string) (v1.Image, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d manifests, want one image", dir, len(im.Manifests))
	}
	return idx.Image(im.Manifests[0].Digest)
}
