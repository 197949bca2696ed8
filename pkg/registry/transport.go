package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// HostConfig says how to reach one registry: its TLS settings, used for
// pulls and pushes alike, and the mirrors pulls try first.
type HostConfig struct {
	// Mirrors are tried in order before the registry itself when pulling,
	// as "host[:port][/path]". Pushes always go to the registry. The default
	// is none.
	Mirrors []string
	// NoFallback stops pulls from falling back to the registry itself when
	// every mirror failed. The default is to fall back.
	NoFallback bool
	// PlainHTTP pulls from the registry over HTTP. The default is HTTPS,
	// except for loopback registries; pushes choose by the reference.
	PlainHTTP bool
	// SkipTLSVerify accepts any server certificate. The default is to verify.
	SkipTLSVerify bool
	// CAFiles are PEM files of extra certificate authorities trusted for
	// this registry, on top of the system pool. The default is none.
	CAFiles []string
	// ClientCerts are certificate and key pairs presented for mutual TLS.
	// The default is none.
	ClientCerts []ClientCert
}

// ClientCert is a PEM certificate and its private key, as files.
type ClientCert struct {
	Cert, Key string
}

// TLSConfig loads the certificates c names into a new tls.Config.
func (c HostConfig) TLSConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.SkipTLSVerify {
		tc.InsecureSkipVerify = true //nolint:gosec // the user asked for it for this registry
	}
	if len(c.CAFiles) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, f := range c.CAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading CA certificate: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("reading CA certificate %s: no PEM certificate in it", f)
			}
		}
		tc.RootCAs = pool
	}
	for _, kp := range c.ClientCerts {
		cert, err := tls.LoadX509KeyPair(kp.Cert, kp.Key)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s: %w", kp.Cert, err)
		}
		tc.Certificates = append(tc.Certificates, cert)
	}
	return tc, nil
}

// hostTransports returns a RoundTripper that sends each request through the
// transport configured for its registry host, and through rt otherwise.
// Hosts in insecure skip verification (plain HTTP is chosen by the
// reference's scheme). Only an *http.Transport can be cloned; any other
// RoundTripper is used as given.
func hostTransports(rt http.RoundTripper, insecure []string, hosts map[string]HostConfig) (http.RoundTripper, error) {
	base, ok := rt.(*http.Transport)
	if !ok || (len(insecure) == 0 && len(hosts) == 0) {
		return rt, nil
	}
	cfgs := map[string]HostConfig{}
	for h, c := range hosts {
		cfgs[h] = c
	}
	for _, h := range insecure {
		c := cfgs[h]
		c.SkipTLSVerify = true
		cfgs[h] = c
	}
	hs := &hostSwitch{fallback: rt, byHost: map[string]http.RoundTripper{}}
	for h, c := range cfgs {
		if !c.hasTLS() {
			continue
		}
		tc, err := c.TLSConfig()
		if err != nil {
			return nil, fmt.Errorf("registry %s: %w", h, err)
		}
		t := base.Clone()
		t.TLSClientConfig = tc
		hs.byHost[h] = t
		if cr := canonicalRegistry(h); cr != h {
			hs.byHost[cr] = t
		}
	}
	return hs, nil
}

// hostSwitch picks a transport by the request's host: "host:port" first,
// then "host" alone, so an entry without a port matches any port.
type hostSwitch struct {
	fallback http.RoundTripper
	byHost   map[string]http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (h *hostSwitch) RoundTrip(req *http.Request) (*http.Response, error) {
	return h.pick(req.URL.Host).RoundTrip(req)
}

func (h *hostSwitch) pick(hostport string) http.RoundTripper {
	if t, ok := h.byHost[hostport]; ok {
		return t
	}
	host := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		host = hh
	}
	if t, ok := h.byHost[strings.ToLower(host)]; ok {
		return t
	}
	return h.fallback
}

var _ http.RoundTripper = (*hostSwitch)(nil)

// hasTLS reports whether c changes anything about TLS.
func (c HostConfig) hasTLS() bool {
	return c.SkipTLSVerify || len(c.CAFiles) > 0 || len(c.ClientCerts) > 0
}
