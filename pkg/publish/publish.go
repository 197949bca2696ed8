// Package publish is the stage after a build: it writes the image to the
// file outputs asked for, pushes it to its registries, and writes the files
// the next CI step reads: the image ID, buildx's metadata file, kaniko's
// digest files and its Cloud Build BUILDER_OUTPUT. It speaks
// go-containerregistry's types only; what built the image does not matter.
package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
	"github.com/imgbuild/imgbuild/pkg/registry"
)

// Output formats [Output.Type] takes.
const (
	OCILayout     = "oci"    // an OCI image layout directory
	OCITarball    = "tar"    // an OCI layout as a tarball
	DockerTarball = "docker" // a docker-archive tarball, for docker load
)

// Output is one file output of the image.
type Output struct {
	// Type is [OCILayout], [OCITarball] or [DockerTarball].
	Type string
	// Dest is the path; "-" is Options.Stdout, for the tarballs.
	Dest string
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
	// Outputs are written first, in order.
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
	// IIDFile gets the image ID (the config digest), as docker's --iidfile.
	IIDFile string
	// MetadataFile gets buildx's metadata JSON.
	MetadataFile string
	// DigestFiles are kaniko's.
	DigestFiles DigestFiles
	// BuilderOutput is kaniko's BUILDER_OUTPUT directory (Cloud Build):
	// DIR/images gets one JSON object per pushed reference.
	BuilderOutput string
	// Stdout is where outputs with Dest "-" go.
	Stdout io.Writer
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
		if err := writeOutput(o.Stdout, out, img); err != nil {
			return digest, err
		}
	}
	if len(o.Push) > 0 {
		pusher, err := registry.NewPusher(o.Registry)
		if err != nil {
			return digest, err
		}
		if _, err := pusher.Push(ctx, img, o.Push); err != nil {
			return digest, err
		}
	}
	if err := writeResultFiles(img, digest, o); err != nil {
		return digest, err
	}
	refs := Dedupe(append(append([]name.Reference{}, o.Names...), o.Push...))
	put := putter{client: o.HTTPClient}
	if err := o.DigestFiles.write(ctx, put, refs, digest.String()); err != nil {
		return digest, err
	}
	if o.BuilderOutput != "" && len(o.Push) > 0 {
		if err := writeBuilderOutput(o.BuilderOutput, o.Push, digest.String()); err != nil {
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

func writeOutput(stdout io.Writer, o Output, img v1.Image) error {
	var err error
	switch o.Type {
	case OCILayout:
		err = registry.WriteOCILayout(o.Dest, img, o.Refs)
	case OCITarball:
		if o.Dest == "-" {
			err = registry.WriteOCITarballTo(stdout, img, o.Refs)
		} else {
			err = registry.WriteOCITarball(o.Dest, img, o.Refs)
		}
	case DockerTarball:
		if o.Dest == "-" {
			err = registry.WriteDockerTarballTo(stdout, img, o.Refs)
		} else {
			err = registry.WriteDockerTarball(o.Dest, img, o.Refs)
		}
	default:
		err = fmt.Errorf("unknown output type %q", o.Type)
	}
	if err != nil {
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
	md := map[string]any{
		"containerimage.digest":        digest.String(),
		"containerimage.config.digest": cfg.String(),
		"containerimage.descriptor": map[string]any{
			"mediaType": mt,
			"digest":    digest.String(),
			"size":      size,
		},
	}
	var names []string
	for _, r := range o.Names {
		names = append(names, r.Name())
	}
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
