// Command imgbuild builds OCI images from Dockerfiles without a daemon.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/imgbuild/imgbuild/cmd/imgbuild/cmd"
	"github.com/imgbuild/imgbuild/pkg/builder"
)

func main() {
	// Run as BuildKit's runc in a single-ID user namespace: fix the bundle
	// and become runc.
	builder.RuncShimMain()
	// In the child of a rootless re-exec, wait for the ID maps first.
	builder.UserNamespaceChildInit()
	args := os.Args[1:]
	// Installed as /kaniko/executor (a symlink), imgbuild is kaniko's
	// executor, so that kaniko Job specs keep their command.
	if filepath.Base(os.Args[0]) == "executor" {
		args = append([]string{"executor"}, args...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Execute(ctx, args)
	stop()
	os.Exit(code)
}
