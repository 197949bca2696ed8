package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// SecureRegistryOptions configure [StartSecureRegistry].
type SecureRegistryOptions struct {
	// Users are htpasswd users (name → password). The default is none: no
	// authentication.
	Users map[string]string
	// TLS serves HTTPS with a certificate from a CA made for the test.
	// The default is plain HTTP.
	TLS bool
	// ClientAuth, with TLS, requires a client certificate signed by the
	// test CA (see [SecureRegistry.ClientCert]). The default is none.
	ClientAuth bool
}

// SecureRegistry is a real distribution registry with authentication or TLS.
type SecureRegistry struct {
	// Addr is "HOST:PORT". With TLS, HOST is this machine's host name, or
	// 0.0.0.0 where that does not resolve to loopback: go-containerregistry,
	// like docker, talks plain HTTP to 127.0.0.1 and localhost whatever the
	// server speaks.
	Addr string
	// CAFile is the PEM file of the CA that signed the server certificate
	// ("" without TLS); CAPool holds the same CA.
	CAFile string
	CAPool *x509.CertPool
	// Dir is a scratch directory that the test may use; it holds the CA.
	Dir string
	// ClientCert and ClientKey are PEM files of a client certificate
	// signed by the test CA ("" without TLS).
	ClientCert, ClientKey string
}

// Client returns an HTTP client that trusts the registry's CA.
func (r *SecureRegistry) Client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: r.Transport()}
}

// Transport returns an HTTP transport that trusts the registry's CA.
func (r *SecureRegistry) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAPool != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: r.CAPool, MinVersion: tls.VersionTLS12}
		if cert, err := tls.LoadX509KeyPair(r.ClientCert, r.ClientKey); err == nil {
			t.TLSClientConfig.Certificates = []tls.Certificate{cert}
		}
	}
	return t
}

// StartSecureRegistry starts a real distribution registry, as
// [StartRegistry] does, with htpasswd users and/or TLS.
func StartSecureRegistry(t testing.TB, opts SecureRegistryOptions) *SecureRegistry {
	t.Helper()
	bin := registryBinary()
	Require(t, bin != "", "%s not found; install Debian's docker-registry package (make deps)", RegistryBinary)
	dir := t.TempDir()
	reg := &SecureRegistry{Dir: dir}
	host := "127.0.0.1"
	if opts.TLS {
		host = tlsHost()
		caFile, pool, err := makeCerts(dir, host)
		if err != nil {
			t.Fatalf("making certificates: %v", err)
		}
		reg.CAFile, reg.CAPool = caFile, pool
		reg.ClientCert, reg.ClientKey = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	}
	var client *http.Client
	if opts.TLS {
		client = reg.Client()
	}
	extra := func(addr string) (string, error) {
		var conf strings.Builder
		if len(opts.Users) > 0 {
			var htpasswd strings.Builder
			for u, p := range opts.Users {
				// MinCost: the registry checks the hash on every request.
				h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
				if err != nil {
					return "", err
				}
				fmt.Fprintf(&htpasswd, "%s:%s\n", u, h)
			}
			file := filepath.Join(dir, "htpasswd")
			if err := os.WriteFile(file, []byte(htpasswd.String()), 0o600); err != nil {
				return "", err
			}
			fmt.Fprintf(&conf, registryAuthConfig, file)
		}
		if opts.TLS {
			// The TLS block belongs to http:, which registryConfig ends with;
			// the auth block is top-level, so it goes after.
			tlsConf := fmt.Sprintf(registryTLSConfig, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
			if opts.ClientAuth {
				tlsConf += fmt.Sprintf("    clientcas:\n      - %s\n", reg.CAFile)
			}
			return tlsConf + conf.String(), nil
		}
		return conf.String(), nil
	}
	rdir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := startRegistry(bin, rdir, extra, client)
	if err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(r.stop)
	reg.Addr = r.addr
	if opts.TLS {
		_, port, _ := net.SplitHostPort(r.addr)
		reg.Addr = net.JoinHostPort(host, port)
	}
	return reg
}

// readyURL is the URL polled until a registry started with extra settings
// is up: HTTPS when a client with the test CA is given.
func readyURL(addr string, client *http.Client) string {
	if client != nil {
		_, port, _ := net.SplitHostPort(addr)
		return "https://" + net.JoinHostPort(tlsHost(), port) + "/v2/"
	}
	return "http://" + addr + "/v2/"
}

// tlsHost names the loopback TLS registry so that clients use HTTPS:
// go-containerregistry and BuildKit talk plain HTTP to 127.0.0.0/8 and
// localhost. The machine's host name serves where it resolves to loopback;
// else 0.0.0.0, which Linux connects to the local host.
func tlsHost() string {
	if h, err := os.Hostname(); err == nil && resolvesToLoopback(h) {
		return h
	}
	return "0.0.0.0"
}

func resolvesToLoopback(host string) bool {
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// makeCerts writes a CA and a server certificate for host and 127.0.0.1,
// signed by it, into dir as ca.pem, server.pem and server-key.pem, and a
// client certificate signed by the same CA as client.pem and client-key.pem.
func makeCerts(dir, host string) (caFile string, pool *x509.CertPool, err error) {
	ca, err := NewCA(dir)
	if err != nil {
		return "", nil, err
	}
	server, err := ca.issue(x509.ExtKeyUsageServerAuth, host, "127.0.0.1", "0.0.0.0")
	if err != nil {
		return "", nil, err
	}
	if err := writeKeyPair(server, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")); err != nil {
		return "", nil, err
	}
	client, err := ca.issue(x509.ExtKeyUsageClientAuth, host)
	if err != nil {
		return "", nil, err
	}
	if err := writeKeyPair(client, filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")); err != nil {
		return "", nil, err
	}
	return ca.File, ca.Pool, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
