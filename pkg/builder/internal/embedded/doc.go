// Package embedded wires one BuildKit controller and its runc worker into
// the calling process, from an explicit [Config] (as BuildKit's control.Opt
// does for buildkitd): [Start] returns a [Controller] whose client talks to
// it over an in-memory gRPC connection.
//
// Besides the wiring (controller.go), it holds what only the worker uses:
// the worker options and their database settings (workeropt.go), the layer
// applier and snapshotter that enforce the unpacking [Limits]
// (limits_apply.go), the exporter that exports a build's own layers in
// the compression asked for, whatever an earlier build left (ownlayers.go), and the executor that starts the
// RUN steps' watchdog (watchdog.go).
//
// It is internal to pkg/builder, which owns the state dir (its lock,
// recovery, sharing and GC) and resolves its options into a Config; this
// package never imports pkg/builder.
package embedded
