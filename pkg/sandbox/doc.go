// Package sandbox is how imgbuild gets the isolation its RUN steps run in:
// the runc it trusts ([FindRunc], [CheckRunc]: a runc without the
// container-escape fixes is refused), the user namespace a process without
// privilege re-enters itself in ([NeedsUserNamespace], [RunInUserNamespace]),
// the shim between BuildKit and runc that a single-ID user namespace needs
// ([RuncShim]), and the watchdog that ends the RUN steps of an imgbuild that
// dies ([Watchdog]). The executor ladder of issue 12 lands here too.
//
// It does not import BuildKit: package builder wires these into BuildKit's
// runc worker. The *Main and *Init functions must be called first thing in
// main, because imgbuild's executable is also the re-executed child, the
// shim and the watchdog.
package sandbox
