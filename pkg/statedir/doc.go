// Package statedir manages where imgbuild keeps its build state on disk and how
// processes share it.
//
// # State directory
//
// The state directory holds the embedded BuildKit solver's snapshotter,
// content store and bbolt databases, the image store of recent build results
// (images/, indexed by [ResultsFile]) and the lock file. [StateDir] resolves
// which directory to use. Each snapshotter has a worker dir of its own
// (runc-NAME) while the solver's databases are shared, so pkg/builder records
// in worker.json which snapshotter, rootless or not, made the build cache, and
// refuses to open the state directory any other way.
//
// # Sharing one state directory between processes
//
// bbolt takes an exclusive lock on its files and BuildKit keeps process-wide
// state keyed by the databases' records, so only one process may open a
// state directory's solver at a time. Concurrent builds on one state
// directory (a CI runner running several jobs) share it through that one
// process instead of queueing behind it:
//
//   - The first process takes the state directory's lock ([Dir.Acquire]: an
//     flock on imgbuild.lock, released by the kernel if the process dies) and
//     becomes its owner. It listens at once on a unix socket in the state
//     directory (imgbuild-HASH.sock, mode 0600 from the start, accepting only
//     its own user or root), then starts the embedded controller and serves
//     it there; a process arriving meanwhile waits for the server. HASH
//     digests the settings that shape the build (runc, snapshotter, registry
//     hosts, frontends): a process only joins an owner that would build
//     exactly as it would itself. The GC policy is the owner's; imgbuild
//     prune and du join like builds.
//   - A later process that finds the lock taken connects to that socket and
//     builds as a BuildKit client, as buildctl does with buildkitd. Everything
//     that belongs to its build stays on its side of the connection through
//     BuildKit's session: the build context and Dockerfile, secrets, registry
//     credentials (its own keychain) and the OCI export, which BuildKit writes
//     into the process's own view of the image store. Every build's steps
//     land in the one cache, so each reuses what the others built; identical
//     steps running at the same time are built once.
//   - One client connection is one build, held from builder.New to
//     Builder.Close (after the push). When the owner's own build is done, it
//     keeps serving until no client is connected, then refuses new
//     connections, runs the end-of-build work (cache mount export, GC, image
//     store pruning) with no build in flight, stops the controller, removes
//     the socket and only then releases the lock. A process that arrives while
//     the owner is closing waits for the lock and becomes the next owner.
//   - Nothing outlives the last build: there is no daemon, and the owner is
//     simply the build that came first. If the owner is killed, the kernel
//     drops its lock; each of its clients sees its connection fail, takes the
//     lock or joins whichever client took it, and builds again, mostly from
//     the cache. The new owner removes the stale socket and cleans up what
//     the killed process left (see crash safety below).
//
// A process that cannot join (other worker settings, or a state directory
// path too long for a unix socket) fails at once naming the holder, or with
// --wait queues for the lock: the fallback. A build with
// --cache-mounts-from/--cache-mounts-to, which work on the owner's records,
// always queues.
//
// # Size and crash safety
//
// [GCConfig] bounds the build cache; the owner applies it when it closes
// (the default bound at most once a minute, as buildkitd does), and
// [Dir.PruneImages] keeps the image store to recent results. At start, with the
// lock held, the owner kills RUN containers and detaches mounts that a
// killed process left under the state directory ([Dir.UnmountStale]; BuildKit's
// temporary mounts live in its tmp/ too) and sets corrupt databases aside
// ([Dir.RecoverDatabases]).
//
// The databases the owner opens itself are not synced per transaction, as
// BuildKit does not sync its solver cache: a killed process loses nothing,
// since the kernel still writes its pages. The owner syncs them when it
// closes and then writes a clean-shutdown mark ([Dir.MarkClean]); the next owner
// skips the databases' full consistency check only when the mark is from the
// same boot and every database is as it was left ([Dir.TakeClean]).
//
// This package never imports BuildKit: pkg/builder maps these plain types onto
// BuildKit's configuration.
package statedir
