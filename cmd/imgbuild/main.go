// Command imgbuild builds OCI images from Dockerfiles without a daemon.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/imgbuild/imgbuild/cmd/imgbuild/cmd"
	"github.com/imgbuild/imgbuild/pkg/sandbox"
)

func main() {
	// Run as the start of an in-place RUN step: set its umask, become it.
	sandbox.StepMain()
	// Run as BuildKit's runc in a single-ID user namespace: fix the bundle
	// and become runc.
	sandbox.RuncShimMain()
	// Run as a build's watchdog: stop its RUN steps when it is killed.
	sandbox.WatchdogMain()
	// In the child of a rootless re-exec, wait for the ID maps first.
	sandbox.UserNamespaceChildInit()
	// In a probe child of the executor ladder, probe and exit.
	sandbox.ProbeMain()
	args := os.Args[1:]
	// Installed as /kaniko/executor (a symlink), imgbuild is kaniko's
	// executor, so that kaniko Job specs keep their command; linked as
	// buildctl, it is `imgbuild buildctl`, for pipelines' buildctl lines.
	// A re-exec into a user namespace is named imgbuild (see
	// sandbox.RunInUserNamespace): its args already start with the command.
	switch filepath.Base(os.Args[0]) {
	case "executor":
		args = append([]string{"executor"}, args...)
	case "buildctl":
		args = append([]string{"buildctl"}, args...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile()
	code := cmd.Execute(ctx, args)
	stopProfile()
	stop()
	os.Exit(code)
}

// startProfile writes a CPU profile to $IMGBUILD_CPUPROFILE, for the
// benchmark work (go tool pprof).
func startProfile() func() {
	path := os.Getenv("IMGBUILD_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
