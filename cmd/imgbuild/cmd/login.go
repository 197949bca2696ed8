package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

type loginOptions struct {
	username      string
	password      string
	passwordStdin bool
	reg           registryFlags
}

func newLoginCmd() *cobra.Command {
	lo := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login [flags] [SERVER]",
		Short: "Log in to a registry",
		Long: `Check a user name and password against a registry and store them in docker's
config.json ($DOCKER_CONFIG, else ~/.docker), through its credential store or
helper when one is configured, as docker login does. imgbuild build then
uses them for pulls and pushes. SERVER defaults to Docker Hub.`,
		Example: `  echo "$REGISTRY_PASSWORD" | imgbuild login -u ci --password-stdin registry.example.com`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogin(cmd, lo, serverArg(args))
		},
	}
	f := cmd.Flags()
	f.StringVarP(&lo.username, "username", "u", "", "user name")
	f.StringVarP(&lo.password, "password", "p", "", "password (prefer --password-stdin: a flag shows in the process list)")
	f.BoolVar(&lo.passwordStdin, "password-stdin", false, "read the password from standard input")
	lo.reg.addFlags(f)
	return cmd
}

func runLogin(cmd *cobra.Command, lo *loginOptions, server string) error {
	if lo.username == "" {
		return errors.New("--username is required")
	}
	password := lo.password
	if lo.passwordStdin {
		if password != "" {
			return errors.New("--password and --password-stdin are mutually exclusive")
		}
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return fmt.Errorf("reading the password from standard input: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if password == "" {
		return errors.New("no password given: use --password-stdin")
	}
	opts, err := lo.reg.registryOptions()
	if err != nil {
		return err
	}
	if err := registry.CheckCredentials(cmd.Context(), server, lo.username, password, opts); err != nil {
		return err
	}
	file, err := registry.Login(server, lo.username, password)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Login succeeded; credentials for %s stored via %s\n", server, file)
	return nil
}

func newLogoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "logout [SERVER]",
		Short:   "Log out of a registry",
		Long:    "Remove a registry's credentials from docker's config.json and its credential store. SERVER defaults to Docker Hub.",
		Example: "  imgbuild logout registry.example.com",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := serverArg(args)
			had, err := registry.Logout(server)
			if err != nil {
				return err
			}
			if !had {
				fmt.Fprintf(cmd.ErrOrStderr(), "Not logged in to %s\n", server)
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Removed credentials for %s\n", server)
			return nil
		},
	}
}

// serverArg is the registry named on the command line, Docker Hub by
// default, as for docker login.
func serverArg(args []string) string {
	if len(args) == 0 {
		return "index.docker.io"
	}
	return args[0]
}
