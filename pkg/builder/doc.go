// Package builder runs Dockerfile builds on an embedded BuildKit solver.
//
// It is the only package of imgbuild that imports BuildKit. [New] brings up a
// BuildKit controller inside the calling process (runc worker, overlayfs or
// native snapshotter, the Dockerfile frontend compiled in) and connects a
// BuildKit client to it over an in-memory gRPC connection: no socket is
// created and no daemon outlives the process. [Builder.Build] solves one
// Dockerfile and returns the resulting image as a go-containerregistry
// v1.Image backed by an OCI content store under the state directory, ready to
// be pushed or written out by package registry.
//
// The runc its RUN steps run with, the user namespace of a build without
// privilege and the watchdog that stops RUN steps when imgbuild is killed
// come from package sandbox; this package wires them into BuildKit.
package builder
