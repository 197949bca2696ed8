// Package publish is the stage after a build: it stages the file outputs the
// builder's exporters write ([Stage]), writes OCI layout directories from the
// image, pushes it to its registries, and writes the files
// the next CI step reads: the image ID, buildx's metadata file, kaniko's
// digest files and its Cloud Build BUILDER_OUTPUT. It speaks
// go-containerregistry's types only; what built the image does not matter.
package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// Output types [Output.Type] takes, with buildx's meanings.
const (
	OCI    = "oci"    // an OCI image layout: a tarball, or a directory with Output.Dir
	Docker = "docker" // a docker-archive tarball, for docker load
	Tar    = "tar"    // a tarball of the image's root filesystem
	Local  = "local"  // the image's root filesystem in a directory
)

// Output is one file output of the image. Only OCI layout directories
// are written by [Publish], from the image; the others are written by the
// builder's exporters during the build, into a place made by [Stage].
type Output struct {
	// Type is [OCI], [Docker], [Tar] or [Local].
	Type string
	// Dest is the path; "-" is standard output, for the tarballs.
	Dest string
	// Dir makes an [OCI] output a layout directory (buildx's tar=false).
	Dir bool
	// Refs name the image inside the output. The default is none.
	Refs []name.Reference
}

// DigestFiles are kaniko's output files, with kaniko's names and formats,
// so that a kaniko Job's consumers keep working. Each is a path or an
// https:// URL (a pre-signed bucket URL), which gets a PUT. Empty ones are
// not written.
type DigestFiles struct {
	// Digest gets the image digest ("sha256:...", no newline).
	Digest string
	// NameDigest gets "REPOSITORY@DIGEST", one line per reference.
	NameDigest string
	// NameTagDigest gets "REPOSITORY:TAG@DIGEST", one line per reference.
	NameTagDigest string
}

// Options say where an image goes.
type Options struct {
	// Outputs are the OCI layout directories ([Output.Dir]), written
	// first, in order.
	Outputs []Output
	// Push are the references pushed, all with the same digest, through
	// Registry.
	Push []name.Reference
	// Registry are the push settings. Its BlobSources let base image
	// layers be mounted from where they were pulled.
	Registry registry.Options
	// Names are the image's names: buildx's image.name in the metadata
	// file, and with Push the digest files' lines.
	Names []name.Reference
	// ByDigest are repositories the image is pushed to by digest only,
	// with no tag (buildx's push-by-digest=true). The metadata file names
	// each by its repository, or "REPOSITORY@DIGEST" with NameCanonical.
	// The default is none.
	ByDigest []name.Repository
	// NameCanonical adds "REPOSITORY@DIGEST" to the metadata file's
	// image.name for every repository the image is named in (buildx's
	// name-canonical=true), so that a merge step needs no other file.
	NameCanonical bool
	// IIDFile gets the image ID (the config digest), as docker's --iidfile.
	IIDFile string
	// MetadataFile gets buildx's metadata JSON.
	MetadataFile string
	// DigestFiles are kaniko's.
	DigestFiles DigestFiles
	// BuilderOutput is kaniko's BUILDER_OUTPUT directory (Cloud Build):
	// DIR/images gets one JSON object per pushed reference.
	BuilderOutput string
	// HTTPClient sends the digest files' PUTs. The default is
	// http.DefaultClient.
	HTTPClient *http.Client
}

// Publish writes img everywhere o says and returns its digest.
func Publish(ctx context.Context, img v1.Image, o Options) (v1.Hash, error) {
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, out := range o.Outputs {
		if err := writeOutput(out, img); err != nil {
			return digest, err
		}
	}
	push := append([]name.Reference{}, o.Push...)
	for _, repo := range o.ByDigest {
		push = append(push, repo.Digest(digest.String()))
	}
	push = Dedupe(push)
	if len(push) > 0 {
		pusher, err := registry.NewPusher(o.Registry)
		if err != nil {
			return digest, err
		}
		if _, err := pusher.Push(ctx, img, push); err != nil {
			return digest, err
		}
	}
	if err := writeResultFiles(img, digest, o); err != nil {
		return digest, err
	}
	refs := Dedupe(append(append([]name.Reference{}, o.Names...), push...))
	put := putter{client: o.HTTPClient}
	if err := o.DigestFiles.write(ctx, put, refs, digest.String()); err != nil {
		return digest, err
	}
	if o.BuilderOutput != "" && len(push) > 0 {
		if err := writeBuilderOutput(o.BuilderOutput, push, digest.String()); err != nil {
			return digest, fmt.Errorf("BUILDER_OUTPUT: %w", err)
		}
	}
	return digest, nil
}

// Dedupe drops repeated references, keeping the first of each.
func Dedupe(refs []name.Reference) []name.Reference {
	seen := map[string]bool{}
	var out []name.Reference
	for _, r := range refs {
		if !seen[r.Name()] {
			seen[r.Name()] = true
			out = append(out, r)
		}
	}
	return out
}

func writeOutput(o Output, img v1.Image) error {
	if o.Type != OCI || !o.Dir {
		return fmt.Errorf("%s output %s: written during the build, not from the image", o.Type, o.Dest)
	}
	if err := registry.WriteOCILayout(o.Dest, img, o.Refs); err != nil {
		return fmt.Errorf("writing %s output %s: %w", o.Type, o.Dest, err)
	}
	return nil
}

// writeResultFiles writes the image ID and metadata files the way buildx
// does.
func writeResultFiles(img v1.Image, digest v1.Hash, o Options) error {
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	if o.IIDFile != "" {
		if err := writeFile(o.IIDFile, []byte(cfg.String())); err != nil {
			return fmt.Errorf("image ID file: %w", err)
		}
	}
	if o.MetadataFile == "" {
		return nil
	}
	mt, _ := img.MediaType()
	size, _ := img.Size()
	desc := map[string]any{
		"mediaType": mt,
		"digest":    digest.String(),
		"size":      size,
	}
	// The platform is what a merge into an index needs besides the digest.
	if cf, err := img.ConfigFile(); err == nil && cf.OS != "" {
		desc["platform"] = cf.Platform()
	}
	md := map[string]any{
		"containerimage.digest":        digest.String(),
		"containerimage.config.digest": cfg.String(),
		"containerimage.descriptor":    desc,
	}
	names := metadataNames(o, digest)
	if len(names) > 0 {
		md["image.name"] = strings.Join(names, ",")
	}
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(o.MetadataFile, append(b, '\n')); err != nil {
		return fmt.Errorf("metadata file: %w", err)
	}
	return nil
}

// metadataNames are image.name's entries: the names, the by-digest
// repositories and, with NameCanonical, each repository by digest.
func metadataNames(o Options, digest v1.Hash) []string {
	var names, repos []string
	add := func(list []string, s string) []string {
		if slices.Contains(list, s) {
			return list
		}
		return append(list, s)
	}
	for _, r := range o.Names {
		names = add(names, r.Name())
		repos = add(repos, r.Context().Name())
	}
	for _, r := range o.ByDigest {
		if !o.NameCanonical {
			names = add(names, r.Name())
		}
		repos = add(repos, r.Name())
	}
	if o.NameCanonical {
		for _, r := range repos {
			names = add(names, r+"@"+digest.String())
		}
	}
	return names
}

// writeBuilderOutput writes DIR/images as kaniko does for Cloud Build: one
// JSON object per pushed reference.
func writeBuilderOutput(dir string, refs []name.Reference, digest string) error {
	var b []byte
	for _, r := range refs {
		line, err := json.Marshal(map[string]string{"name": r.Name(), "digest": digest})
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
	}
	return writeFile(filepath.Join(dir, "images"), b)
}

// writeFile writes data to path, making its directory, so a reader never
// sees a half-written file.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o644)
}
