// Package builder runs Dockerfile builds on an embedded BuildKit solver.
//
// It and its internal packages are the only code of imgbuild that imports
// BuildKit. [New] brings up a BuildKit controller inside the calling process
// (runc worker, overlayfs or native snapshotter, the Dockerfile frontend
// compiled in) and connects a BuildKit client to it over an in-memory gRPC
// connection: no socket is created and no daemon outlives the process.
// [Builder.Build] solves one Dockerfile and returns the resulting image as a
// go-containerregistry v1.Image backed by an OCI content store under the
// state directory, ready to be pushed or written out by package registry.
//
// The runc its RUN steps run with, the user namespace of a build without
// privilege and the watchdog that stops RUN steps when imgbuild is killed
// come from package sandbox; the controller and worker are wired in
// internal/embedded, from an explicit embedded.Config.
//
// # Files
//
//   - builder.go, options.go, registry_options.go: [Builder], [New], the
//     build [Request] and [Builder.Build], their options.
//   - context.go, frontend.go, compression.go, errors.go: what a build
//     sends BuildKit (context, frontend, export attributes) and how its
//     errors come back ([BuildError]).
//   - image.go, linkstore.go: the result image, read from the image store.
//   - start.go: options resolved into embedded.Config; the state dir
//     prepared before the controller opens it.
//   - shared.go: taking the state dir's lock, or joining the process that
//     holds it and serving its controller to others.
//   - recover.go, workerrecord.go: crash recovery and the snapshotter record.
//   - gc.go, cachemounts.go, cachemounts_registry.go: garbage collection at
//     close, [Builder.Prune], and cache mounts carried across state dirs
//     ([CacheMounts]) in a directory or a registry artifact.
//   - auth.go, hosts.go, pull_retry.go, limits.go, blobsources.go,
//     baseregistries.go: the pull side: credentials, per-registry hosts,
//     retries, [Limits] on pulled manifests, where blobs came from.
//
// The package is over 1,000 lines because the Builder's own duties stay
// with it: sharing a state dir between processes, its recovery and GC, cache
// mounts and the pull-side registry plumbing all act on a [Builder] or its
// options; what wires BuildKit itself lives in internal/embedded.
package builder
