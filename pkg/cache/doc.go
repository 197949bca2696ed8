// Package cache manages where imgbuild keeps its build state on disk.
//
// The state directory holds the embedded BuildKit solver's snapshotter,
// content store and bbolt databases. bbolt takes an exclusive lock on its
// files, so two imgbuild processes cannot share one state directory at the
// same time; [Acquire] turns that into an early, readable error (or a wait)
// instead of a hang deep inside BuildKit. [StateDir] resolves which directory
// to use.
//
// This package never imports BuildKit: pkg/builder maps these plain types onto
// BuildKit's configuration.
package cache
