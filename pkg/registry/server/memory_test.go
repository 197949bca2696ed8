package server

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// serveRootEnv makes the test binary serve New($serveRootEnv) on a loopback
// port it prints, so a test can measure the server's memory on its own,
// without the client's buffers in the same process.
const serveRootEnv = "IMGBUILD_TEST_SERVE_ROOT"

func TestMain(m *testing.M) {
	if root := os.Getenv(serveRootEnv); root != "" {
		os.Exit(serveForTest(root))
	}
	os.Exit(m.Run())
}

func serveForTest(root string) int {
	h, err := New(root, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	return 1
}

// startServerProcess runs the server in a child process and returns its
// host and the child.
func startServerProcess(t *testing.T, root string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveRootEnv+"="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it serves until killed
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the server's address: %v", err)
	}
	return strings.TrimSpace(addr), cmd
}

// randomTar streams a tar holding one file of size random bytes.
func randomTar(size int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "random", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.Copy(tw, io.LimitReader(rand.NewChaCha8([32]byte{1}), size))
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// vmHWM is the peak resident set size of pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("parsing VmHWM %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// TestServerLargePushHoldsBoundedMemory pushes a 300 MB layer the way
// imgbuild pushes (ggcr's streaming PATCH) to the server in a child process
// and checks the child's peak RSS. The bound is generous on purpose: the
// issue's 200 MB target is measured by make bench; this catches a server
// that buffers the blob, which costs more than the blob's size.
func TestServerLargePushHoldsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 300 MB")
	}
	const (
		layerSize = 300 << 20
		maxRSS    = 150 << 20
	)
	host, cmd := startServerProcess(t, t.TempDir())

	// One file of random bytes, stored uncompressed: the test measures the
	// server, not gzip.
	layer := stream.NewLayer(randomTar(layerSize), stream.WithCompressionLevel(gzip.NoCompression))
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/big:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("reading %s back: %v", ref, err)
	}
	if err := validate.Image(got); err != nil {
		t.Errorf("validate.Image(%s): %v", ref, err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := got.Digest(); err != nil || d != want {
		t.Errorf("%s has digest %v (%v), want %s", ref, d, err, want)
	}

	rss := vmHWM(t, cmd.Process.Pid)
	t.Logf("server peak RSS after a %d MB push and pull: %.1f MB", layerSize>>20, float64(rss)/(1<<20))
	if rss > maxRSS {
		t.Errorf("server peak RSS %.1f MB, want at most %d MB", float64(rss)/(1<<20), maxRSS>>20)
	}
}
