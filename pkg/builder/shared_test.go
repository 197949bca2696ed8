//go:build linux

package builder

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/imgbuild/imgbuild/pkg/registry"
)

func TestSocketPath(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	base := func() *options { return &options{root: root, runc: "/usr/bin/runc", snapshotter: "auto"} }
	p := socketPath(base())
	if filepath.Dir(p) != root || !strings.HasPrefix(filepath.Base(p), "imgbuild-") || !strings.HasSuffix(p, ".sock") {
		t.Fatalf("socketPath = %q", p)
	}
	same := base()
	same.hosts, same.insecure = map[string]registry.HostConfig{}, []string{}
	same.gc.MaxUsed = 1 << 30 // the owner's housekeeping, not part of the build
	if got := socketPath(same); got != p {
		t.Errorf("empty settings or another GC policy change the socket: %q vs %q", got, p)
	}
	for name, change := range map[string]func(*options){
		"runc":     func(o *options) { o.runc = "/opt/runc" },
		"insecure": func(o *options) { o.insecure = []string{"reg:5000"} },
		"hosts":    func(o *options) { o.hosts = map[string]registry.HostConfig{"reg": {PlainHTTP: true}} },
		"frontend": func(o *options) { o.allowExternalFrontends = true },
	} {
		o := base()
		change(o)
		if socketPath(o) == p {
			t.Errorf("changing %s keeps the socket %q", name, p)
		}
	}
	long := base()
	long.root = "/" + strings.Repeat("d", 100)
	if got := socketPath(long); got != "" {
		t.Errorf("socketPath for a long root = %q, want none", got)
	}
	if shareable(&options{root: root, cacheMounts: CacheMounts{To: CacheMountsStore{Dir: "/x"}}}) {
		t.Error("a build exporting cache mounts is shareable")
	}
}

// TestSharedServerDrain checks the owner's shutdown protocol: drain waits for
// connected clients, then new connections are refused, and close removes the
// socket.
func TestSharedServerDrain(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	srv := grpc.NewServer()
	defer srv.Stop()
	path := filepath.Join(root, "imgbuild-test.sock")
	ln, err := listenShared(root, path)
	if err != nil {
		t.Fatal(err)
	}
	s := serveShared(srv, path, ln)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, %v; want a socket with mode 0600", path, fi.Mode(), err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(root, ".sock-*")); len(tmp) != 0 {
		t.Errorf("temporary socket dirs left: %v", tmp)
	}
	c1, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.active == 1 })

	drained := make(chan struct{})
	go func() { s.drain(); close(drained) }()
	select {
	case <-drained:
		t.Fatal("drain returned while a client is connected")
	case <-time.After(200 * time.Millisecond):
	}
	c1.Close()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not return after the last client left")
	}

	// A client arriving now is cut off at once: it will wait for the lock.
	c2, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("read on a connection to a closing owner: %v, want EOF", err)
	}
	c2.Close()
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if socks, _ := filepath.Glob(filepath.Join(root, "*.sock")); len(socks) != 0 {
		t.Errorf("socket left after close: %v", socks)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
