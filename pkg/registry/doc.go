// Package registry moves built images out of imgbuild: it pushes a
// [v1.Image] or [v1.ImageIndex] to one or more registries through a single
// long-lived go-containerregistry pusher ([Pusher]), writes the output files
// (OCI layout directory, OCI tarball, docker-archive tarball), and serves a
// small registry that keeps its content on disk across restarts ([NewServer]).
//
// It uses go-containerregistry only and never imports BuildKit: the builder
// hands over images as ggcr values, whatever produced them.
package registry
