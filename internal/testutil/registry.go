package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RegistryBinary is Debian's build of the CNCF distribution registry
// (package docker-registry).
const RegistryBinary = "/usr/bin/docker-registry"

const registryStartTimeout = 10 * time.Second

// registryConfig is a minimal distribution 2.8 config: filesystem storage,
// deletes enabled (tests clean up tags), and no upload purging, whose
// background goroutine only adds log noise.
const registryConfig = `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: imgbuild-test-secret
`

// registryAuthConfig adds htpasswd auth to registryConfig.
const registryAuthConfig = `auth:
  htpasswd:
    realm: imgbuild-test
    path: %s
`

// registryTLSConfig adds TLS to registryConfig's http section.
const registryTLSConfig = `  tls:
    certificate: %s
    key: %s
`

// registryBinary returns the registry binary, or "" if it is not installed.
func registryBinary() string {
	if _, err := os.Stat(RegistryBinary); err == nil {
		return RegistryBinary
	}
	if p, err := exec.LookPath("docker-registry"); err == nil {
		return p
	}
	return ""
}

// StartRegistry starts a real distribution registry on 127.0.0.1 with its
// storage in t.TempDir() and returns its "127.0.0.1:PORT" address. It is
// killed when the test ends. The test is skipped (failed in CI) when the
// docker-registry package is not installed.
func StartRegistry(t testing.TB) string {
	t.Helper()
	bin := registryBinary()
	Require(t, bin != "", "%s not found; install Debian's docker-registry package (make deps)", RegistryBinary)
	r, err := startRegistry(bin, t.TempDir(), nil, nil)
	if err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(r.stop)
	return r.addr
}

// StartSharedRegistry is StartRegistry for TestMain, where there is no
// *testing.T: one registry serves every test in the package. stop kills it
// and removes its storage.
func StartSharedRegistry() (addr string, stop func(), err error) {
	bin := registryBinary()
	if bin == "" {
		return "", nil, fmt.Errorf("starting registry: %s not found; install Debian's docker-registry package (make deps)", RegistryBinary)
	}
	dir, err := os.MkdirTemp("", "imgbuild-registry-")
	if err != nil {
		return "", nil, fmt.Errorf("starting registry: %w", err)
	}
	r, err := startRegistry(bin, dir, nil, nil)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("starting registry: %w", err)
	}
	return r.addr, func() {
		r.stop()
		os.RemoveAll(dir)
	}, nil
}

type registryProc struct {
	addr string
	stop func()
}

// startRegistry picks a free port and starts the registry on it. Another
// process can grab the port between our probe and the registry's bind, so a
// bind failure is retried on a new port.
func startRegistry(bin, dir string, extra func(addr string) (string, error), client *http.Client) (*registryProc, error) {
	var errs []error
	for range 3 {
		r, retry, err := startRegistryOnce(bin, dir, extra, client)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if !retry {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func startRegistryOnce(bin, dir string, extra func(addr string) (string, error), client *http.Client) (_ *registryProc, retry bool, _ error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, false, err
	}
	storage := filepath.Join(dir, "storage")
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Appendf(nil, registryConfig, storage, addr)
	url := "http://" + addr + "/v2/"
	if extra != nil {
		more, err := extra(addr)
		if err != nil {
			return nil, false, err
		}
		conf = append(conf, more...)
		url = ""
	}
	if err := os.WriteFile(cfg, conf, 0o600); err != nil {
		return nil, false, fmt.Errorf("writing registry config: %w", err)
	}

	var logs syncBuffer
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Take the registry down with the test binary if it dies without
	// running cleanups (a panic, or go test's timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("running %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	if url == "" {
		url = readyURL(addr, client)
	}
	if err := waitReady(url, client, exited); err != nil {
		stop()
		out := logs.String()
		return nil, strings.Contains(out, "address already in use"),
			fmt.Errorf("registry on %s: %w; registry log:\n%s", addr, err, out)
	}
	return &registryProc{addr: addr, stop: stop}, false, nil
}

// waitReady polls GET url (the registry's /v2/) until it answers 200, or 401
// for a registry that wants credentials.
func waitReady(url string, client *http.Client, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryStartTimeout)
	defer cancel()
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-exited:
			return errors.New("registry exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", registryStartTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// syncBuffer is a bytes.Buffer safe for the registry's stdout and stderr
// copiers and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
