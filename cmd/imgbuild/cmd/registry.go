package cmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/registry/server"
)

// shutdownTimeout bounds how long in-flight uploads may finish after the
// context is cancelled.
const shutdownTimeout = 10 * time.Second

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:          "registry",
		Short:        "Run a local OCI registry",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		Example:      "  imgbuild registry serve --addr 127.0.0.1:5000",
	}
	cmd.AddCommand(newRegistryServeCmd())
	return cmd
}

type registryServeOptions struct {
	addr string
	root string
}

func newRegistryServeCmd() *cobra.Command {
	o := &registryServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a registry for laptops and demos, kept on disk across restarts",
		Long: `Serve a registry for laptops and demos, kept on disk across restarts.

Blobs and manifests live under --root. The registry has no authentication and
speaks plain HTTP; listen on loopback unless you mean to share it.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		Example: `  # Serve on the default address, with content in $IMGBUILD_ROOT/registry
  imgbuild registry serve

  # Serve on another port and push to it
  imgbuild registry serve --addr 127.0.0.1:5001 --root /tmp/registry &
  imgbuild build -t 127.0.0.1:5001/app:dev .`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	cmd.Flags().StringVar(&o.addr, "addr", "127.0.0.1:5000", "address to listen on")
	cmd.Flags().StringVar(&o.root, "root", defaultRegistryRoot(), "directory holding the registry's blobs and manifests")
	return cmd
}

// defaultRegistryRoot is $IMGBUILD_ROOT/registry, else /var/lib/imgbuild/registry.
func defaultRegistryRoot() string {
	if r := os.Getenv("IMGBUILD_ROOT"); r != "" {
		return filepath.Join(r, "registry")
	}
	return "/var/lib/imgbuild/registry"
}

func (o *registryServeOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// Request lines go to logrus at debug level: --log-level debug shows them.
	h, err := server.New(o.root, logrus.StandardLogger().Debugf)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	fmt.Fprintf(cmd.ErrOrStderr(), "serving registry on http://%s (root %s)\n", ln.Addr(), o.root)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving registry: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down registry: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving registry: %w", err)
	}
	return nil
}
