// Package testutil is the shared harness for imgbuild's integration tests:
// prerequisite checks that skip locally but fail in CI ([Require]), a real
// distribution registry on loopback ([StartRegistry]), and a small
// deterministic busybox base image ([BusyboxImage], [PushBusybox]) so builds
// never pull from the internet.
package testutil
