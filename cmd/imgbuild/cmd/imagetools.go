package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/imagetools"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

func newImagetoolsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:          "imagetools",
		Short:        "Work on images in a registry: merge them into an index, inspect them",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		Example: `  imgbuild imagetools create -t registry.example.com/app:1.2 registry.example.com/app@sha256:... registry.example.com/app@sha256:...
  imgbuild imagetools inspect registry.example.com/app:1.2`,
	}
	cmd.AddCommand(newImagetoolsCreateCmd(), newImagetoolsInspectCmd())
	return cmd
}

type imagetoolsCreateOptions struct {
	tags   []string
	dryRun bool
	append bool
	reg    registryFlags
}

func newImagetoolsCreateCmd() *cobra.Command {
	o := &imagetoolsCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create -t REF [-t REF...] SOURCE...",
		Short: "Merge images into one image index and push it",
		Long: `Merge images into one multi-platform image index and push it under every
--tag, as docker buildx imagetools create does: the step after one runner
per architecture pushed its image by digest (imgbuild build -o
type=image,name=REPOSITORY,push-by-digest=true,name-canonical=true).

Each SOURCE is REPOSITORY@DIGEST (or a tag); a source that is an index adds
its children. Each child's platform comes from its image config. Children
the destination repository has are not copied; those in another
repository of the same registry are mounted there, blob by blob. The index
digest is printed on standard output.`,
		Example: `  # Merge the amd64 and arm64 images pushed by two runners
  imgbuild imagetools create -t registry.example.com/app:1.2 \
    registry.example.com/app@sha256:4f1c... registry.example.com/app@sha256:9b2e...

  # Print the index without pushing it
  imgbuild imagetools create --dry-run -t registry.example.com/app:1.2 registry.example.com/app@sha256:4f1c...

  # Add a platform to the index a tag serves
  imgbuild imagetools create --append -t registry.example.com/app:1.2 registry.example.com/app@sha256:77aa...`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, `reference to push the index to, "REPOSITORY:TAG" (repeatable)`)
	f.BoolVar(&o.dryRun, "dry-run", false, "print the index JSON and push nothing")
	f.BoolVar(&o.append, "append", false, "add the sources to the index the first --tag serves")
	o.reg.addFlags(f)
	return cmd
}

func (o *imagetoolsCreateOptions) run(cmd *cobra.Command, args []string) error {
	ctx := cmd.Context()
	if len(o.tags) == 0 && !o.dryRun {
		return fmt.Errorf("imagetools create: --tag is required (or --dry-run)")
	}
	var tags []name.Reference
	for _, t := range o.tags {
		ref, err := registry.ParseReference(t, o.reg.insecure)
		if err != nil {
			return fmt.Errorf("--tag: %w", err)
		}
		tags = append(tags, ref)
	}
	var srcs []name.Reference
	if o.append {
		if len(tags) == 0 {
			return fmt.Errorf("--append needs --tag")
		}
		srcs = append(srcs, tags[0])
	}
	for _, a := range args {
		ref, err := registry.ParseReference(a, o.reg.insecure)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		srcs = append(srcs, ref)
	}
	opts, err := o.reg.registryOptions()
	if err != nil {
		return err
	}
	if !o.dryRun {
		opts.Progress = cmd.ErrOrStderr()
	}
	p, err := registry.NewPusher(opts)
	if err != nil {
		return err
	}
	idx, err := imagetools.Create(ctx, p, srcs)
	if err != nil {
		return fmt.Errorf("imagetools create: %w", err)
	}
	if o.dryRun {
		raw, err := idx.RawManifest()
		if err != nil {
			return err
		}
		return printJSON(cmd.OutOrStdout(), raw)
	}
	digest, err := p.PushIndex(ctx, idx, tags)
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), digest)
	return nil
}

type imagetoolsInspectOptions struct {
	raw bool
	reg registryFlags
}

func newImagetoolsInspectCmd() *cobra.Command {
	o := &imagetoolsInspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show an image or image index in a registry",
		Long: `Show an image or image index in a registry, as docker buildx imagetools
inspect does: its name, media type and digest and, for an index, each
child's platform and digest. --raw prints the manifest as the registry
serves it.`,
		Example: `  imgbuild imagetools inspect registry.example.com/app:1.2
  imgbuild imagetools inspect --raw registry.example.com/app:1.2 | jq .`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	cmd.Flags().BoolVar(&o.raw, "raw", false, "print the raw manifest JSON")
	o.reg.addFlags(cmd.Flags())
	return cmd
}

func (o *imagetoolsInspectOptions) run(cmd *cobra.Command, arg string) error {
	ref, err := registry.ParseReference(arg, o.reg.insecure)
	if err != nil {
		return err
	}
	opts, err := o.reg.registryOptions()
	if err != nil {
		return err
	}
	p, err := registry.NewPusher(opts)
	if err != nil {
		return err
	}
	desc, err := p.Get(cmd.Context(), ref)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	out := cmd.OutOrStdout()
	if o.raw {
		_, err := out.Write(desc.Manifest)
		return err
	}
	return printSummary(out, ref, desc)
}

// printSummary writes buildx's default imagetools inspect text.
func printSummary(w io.Writer, ref name.Reference, desc *remote.Descriptor) error {
	fmt.Fprintf(w, "Name:      %s\n", ref)
	fmt.Fprintf(w, "MediaType: %s\n", desc.MediaType)
	fmt.Fprintf(w, "Digest:    %s\n", desc.Digest)
	if !desc.MediaType.IsIndex() {
		return nil
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	fmt.Fprintf(w, "\nManifests:\n")
	for i, m := range im.Manifests {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "  Name:        %s@%s\n", ref.Context(), m.Digest)
		fmt.Fprintf(w, "  MediaType:   %s\n", m.MediaType)
		if m.Platform != nil {
			fmt.Fprintf(w, "  Platform:    %s\n", m.Platform)
		}
		for _, k := range slices.Sorted(maps.Keys(m.Annotations)) {
			fmt.Fprintf(w, "  Annotation:  %s=%s\n", k, m.Annotations[k])
		}
	}
	return nil
}

// printJSON writes raw indented, keeping its key order.
func printJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
