package cmd

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// imgbuildEnv runs the imgbuild binary with extra environment variables.
func imgbuildEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running imgbuild: %v", err)
		}
		code = ee.ExitCode()
	}
	t.Logf("imgbuild %s\n--- exit %d, stderr:\n%s", strings.Join(args, " "), code, errb.String())
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// secureEnv is a registry that wants a password and speaks TLS with a test
// CA, holding a private busybox base image.
type secureEnv struct {
	reg        *testutil.SecureRegistry
	user, pass string
	base       string
}

func startSecure(t *testing.T) secureEnv {
	t.Helper()
	setup(t)
	pass := "pw-" + randHex(t)
	reg := testutil.StartSecureRegistry(t, testutil.SecureRegistryOptions{Users: map[string]string{"alice": pass}, TLS: true})
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	base := reg.Addr + "/base/busybox:1"
	ref, err := name.ParseReference(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: pass}), remote.WithTransport(reg.Transport())); err != nil {
		t.Fatalf("pushing base image: %v", err)
	}
	return secureEnv{reg: reg, user: "alice", pass: pass, base: base}
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// dockerConfig writes a docker config.json with body into a new directory
// and returns the directory.
func dockerConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pullSecure fetches ref from the secure registry and validates it.
func (s secureEnv) pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithAuth(&authn.Basic{Username: s.user, Password: s.pass}), remote.WithTransport(s.reg.Transport()))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validating %s: %v", ref, err)
	}
	return img
}

func (s secureEnv) build(t *testing.T, e e2e, env []string, args ...string) result {
	t.Helper()
	full := append([]string{"build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE=" + s.base}, args...)
	return imgbuildEnv(t, env, "", full...)
}

const envDockerfile = "ARG BASE\nFROM $BASE\nRUN env > /env.txt\n"

// TestRegistryDockerConfigTLSE2E pulls a private base image and pushes over
// TLS with a test CA given by --registry-certificate and a password from
// docker config.json; the password shows in no log, not even at debug
// level, nor in a RUN step's environment.
func TestRegistryDockerConfigTLSE2E(t *testing.T) {
	e := setup(t)
	s := startSecure(t)
	auth := base64.StdEncoding.EncodeToString([]byte(s.user + ":" + s.pass))
	cfg := dockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.reg.Addr, auth))
	ctxDir := writeContext(t, map[string]string{"Dockerfile": envDockerfile})
	ghToken := "ghp_" + randHex(t)
	env := []string{"DOCKER_CONFIG=" + cfg, "GITHUB_TOKEN=" + ghToken}
	tag := s.reg.Addr + "/app:v1"

	r := s.build(t, e, env, "--log-level", "debug", "--registry-certificate", s.reg.Addr+"="+s.reg.CAFile, "-t", tag, "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("build failed (exit %d)", r.code)
	}
	digest := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, "pushed "+tag+"@"+digest) {
		t.Errorf("progress does not report the digest served for %s (%s)", tag, digest)
	}
	img := s.pull(t, tag)
	if d, _ := img.Digest(); d.String() != digest {
		t.Errorf("registry serves %s, imgbuild printed %s", d, digest)
	}
	envTxt := files(t, img)["env.txt"]
	for _, secret := range []string{s.pass, auth, ghToken} {
		if strings.Contains(r.stderr, secret) || strings.Contains(r.stdout, secret) {
			t.Errorf("a credential (%.6s…) appears in imgbuild's output", secret)
		}
		if strings.Contains(envTxt, secret) || bytes.Contains(allBlobs(t, img), []byte(secret)) {
			t.Errorf("a credential (%.6s…) appears in the image or a RUN step's environment", secret)
		}
	}

	// Without the CA, the pull fails naming the registry.
	r = s.build(t, e, env, "-t", tag, ctxDir)
	if r.code == 0 {
		t.Fatal("build without --registry-certificate succeeded")
	}
	if !strings.Contains(r.stderr, s.reg.Addr) || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("error does not name the registry and the certificate problem")
	}
}
