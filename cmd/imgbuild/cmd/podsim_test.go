package cmd

import (
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgbuild/imgbuild/internal/podsim"
)

// derivePod simulates the pod of hack/k8s/manifest (internal/podsim), in a
// bundle directory removed when the test ends.
func derivePod(t *testing.T, manifest string, img podsim.Image, opts ...podsim.Option) *podsim.Pod {
	t.Helper()
	// Not t.TempDir: its parent is private to the host's root, and a
	// user-namespaced pod's root must reach its rootfs.
	dir, err := os.MkdirTemp("", "imgbuild-pod-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := podsim.Derive(manifest, dir, img, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runPod unpacks img as the pod's root filesystem and runs the pod to its
// end with runc, returning what it printed.
func runPod(t *testing.T, p *podsim.Pod, runc string, img v1.Image) (string, error) {
	t.Helper()
	if err := p.Unpack(img); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := p.Run(t.Context(), runc, &out, &out)
	t.Logf("pod %s output:\n%s", p.Manifest, out.String())
	return out.String(), err
}
