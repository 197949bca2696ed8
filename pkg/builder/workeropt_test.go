//go:build linux

package builder

import (
	"testing"

	"github.com/moby/buildkit/util/network"
)

func TestLazyProxyProviderClosedBeforeUse(t *testing.T) {
	l := &lazyProxyProvider{}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if l.p != nil {
		t.Fatal("Close created the proxy provider")
	}
	if _, err := l.NewProxy(t.Context(), &network.ProxyConfig{}); err == nil {
		t.Fatal("NewProxy after Close: want an error")
	}
}
