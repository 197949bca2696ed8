// Command imgbuild builds OCI images from Dockerfiles without a daemon.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/imgbuild/imgbuild/cmd/imgbuild/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
