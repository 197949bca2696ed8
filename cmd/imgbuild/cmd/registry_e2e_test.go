package cmd

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

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

// credHelperSource is a docker credential helper that answers `get` for one
// server with fixed credentials, and counts its calls in a file.
const credHelperSource = `package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "get" {
		os.Exit(1)
	}
	in, _ := io.ReadAll(os.Stdin)
	server := strings.TrimSpace(string(in))
	f, _ := os.OpenFile(os.Getenv("HELPER_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	f.WriteString(server + "\n")
	f.Close()
	if server != os.Getenv("HELPER_SERVER") {
		os.Stdout.WriteString("credentials not found in native keychain\n")
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"ServerURL": server, "Username": os.Getenv("HELPER_USER"), "Secret": os.Getenv("HELPER_SECRET")})
}
`

// buildCredHelper builds docker-credential-imgbuildtest into a new
// directory and returns the directory.
func buildCredHelper(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(credHelperSource), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "docker-credential-imgbuildtest"), src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the credential helper: %v\n%s", err, out)
	}
	return dir
}

// TestRegistryLoginCredHelperE2E logs in with `imgbuild login`, pushes with
// the stored credentials and kaniko's digest files, logs out, then pulls
// and pushes with credentials from a credential helper binary.
func TestRegistryLoginCredHelperE2E(t *testing.T) {
	e := setup(t)
	s := startSecure(t)
	cert := "--registry-certificate=" + s.reg.Addr + "=" + s.reg.CAFile
	cfgDir := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + cfgDir}

	// A wrong password is refused and nothing is stored.
	r := imgbuildEnv(t, env, "wrong\n", "login", "-u", s.user, "--password-stdin", cert, s.reg.Addr)
	if r.code == 0 {
		t.Fatal("login with a wrong password succeeded")
	}
	if !strings.Contains(r.stderr, s.reg.Addr) {
		t.Errorf("login error does not name the registry")
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "config.json")); err == nil {
		t.Error("a failed login wrote config.json")
	}

	r = imgbuildEnv(t, env, s.pass+"\n", "login", "-u", s.user, "--password-stdin", cert, s.reg.Addr)
	if r.code != 0 {
		t.Fatalf("login failed (exit %d)", r.code)
	}
	cfg, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(s.user + ":" + s.pass))
	if !strings.Contains(string(cfg), fmt.Sprintf("%q", s.reg.Addr)) || !strings.Contains(string(cfg), auth) {
		t.Errorf("config.json does not hold the credentials for %s:\n%s", s.reg.Addr, cfg)
	}

	out := t.TempDir()
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n"})
	tagA, tagB := s.reg.Addr+"/team/app:a", s.reg.Addr+"/team/app:b"
	r = s.build(t, e, env, cert, "-t", tagA, "-t", tagB, "--push",
		"--digest-file", filepath.Join(out, "digest"),
		"--image-name-with-digest-file", filepath.Join(out, "name"),
		"--image-name-tag-with-digest-file", filepath.Join(out, "nametag"),
		ctxDir)
	if r.code != 0 {
		t.Fatalf("build with login credentials failed (exit %d)", r.code)
	}
	digest := strings.TrimSpace(r.stdout)
	s.pull(t, tagB)
	repo := s.reg.Addr + "/team/app"
	for file, want := range map[string]string{
		"digest":  digest,
		"name":    repo + "@" + digest + "\n" + repo + "@" + digest + "\n",
		"nametag": tagA + "@" + digest + "\n" + tagB + "@" + digest + "\n",
	} {
		got, err := os.ReadFile(filepath.Join(out, file))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}

	r = imgbuildEnv(t, env, "", "logout", s.reg.Addr)
	if r.code != 0 {
		t.Fatalf("logout failed (exit %d)", r.code)
	}
	if cfg, _ := os.ReadFile(filepath.Join(cfgDir, "config.json")); strings.Contains(string(cfg), auth) {
		t.Errorf("config.json still holds the credentials after logout:\n%s", cfg)
	}
	// Logged out, the private base image cannot be pulled.
	r = s.build(t, e, env, cert, "-t", tagA, ctxDir)
	if r.code == 0 {
		t.Fatal("build after logout succeeded")
	}

	// A credential helper named in credHelpers supplies the credentials.
	helperDir := buildCredHelper(t)
	helperLog := filepath.Join(t.TempDir(), "helper.log")
	cfgDir = dockerConfig(t, fmt.Sprintf(`{"credHelpers":{%q:"imgbuildtest"}}`, s.reg.Addr))
	env = []string{
		"DOCKER_CONFIG=" + cfgDir,
		"PATH=" + helperDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HELPER_LOG=" + helperLog, "HELPER_SERVER=" + s.reg.Addr, "HELPER_USER=" + s.user, "HELPER_SECRET=" + s.pass,
	}
	r = s.build(t, e, env, cert, "-t", s.reg.Addr+"/helper/app:v1", "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("build with a credential helper failed (exit %d)", r.code)
	}
	s.pull(t, s.reg.Addr+"/helper/app:v1")
	if calls, _ := os.ReadFile(helperLog); !strings.Contains(string(calls), s.reg.Addr) {
		t.Errorf("the credential helper was not asked for %s", s.reg.Addr)
	}
}

// TestRegistryClientCertAndSkipVerifyE2E: a registry that requires a client
// certificate is reached with --registry-client-cert (and refuses a build
// without one); --skip-tls-verify-registry reaches it without its CA.
func TestRegistryClientCertAndSkipVerifyE2E(t *testing.T) {
	e := setup(t)
	reg := testutil.StartSecureRegistry(t, testutil.SecureRegistryOptions{TLS: true, ClientAuth: true})
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	base := reg.Addr + "/base/busybox:1"
	ref, err := name.ParseReference(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(reg.Transport())); err != nil {
		t.Fatalf("pushing base image: %v", err)
	}
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n"})
	build := func(args ...string) result {
		full := append([]string{"build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE=" + base}, args...)
		return imgbuildEnv(t, nil, "", full...)
	}
	clientCert := "--registry-client-cert=" + reg.Addr + "=" + reg.ClientCert + "," + reg.ClientKey

	r := build("--registry-certificate", reg.Addr+"="+reg.CAFile, clientCert, "-t", reg.Addr+"/app:mtls", "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("build with a client certificate failed (exit %d)", r.code)
	}
	r = build("--skip-tls-verify-registry", reg.Addr, clientCert, "-t", reg.Addr+"/app:noverify", "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("build with --skip-tls-verify-registry failed (exit %d)", r.code)
	}
	for _, tag := range []string{"mtls", "noverify"} {
		r, err := name.ParseReference(reg.Addr + "/app:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Head(r, remote.WithTransport(reg.Transport())); err != nil {
			t.Errorf("%s not pushed: %v", r, err)
		}
	}
	r = build("--registry-certificate", reg.Addr+"="+reg.CAFile, "-t", reg.Addr+"/app:nocert", ctxDir)
	if r.code == 0 {
		t.Error("build without a client certificate succeeded")
	}
	r = build(clientCert+"-missing", "-t", reg.Addr+"/app:x", ctxDir)
	if r.code == 0 || !strings.Contains(r.stderr, "client certificate") {
		t.Errorf("a missing client certificate file is not reported up front")
	}
}

// TestRegistryMirrorsE2E pulls base images through --registry-map and
// --registry-mirror from the test registry, which stands in for the mirror:
// the original registries do not exist, so a pull that did not use the
// mirror fails.
func TestRegistryMirrorsE2E(t *testing.T) {
	e := setup(t)
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.Push(t.Context(), e.registry+"/mirror/library/busybox:latest", img); err != nil {
		t.Fatal(err)
	}
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n"})
	build := func(base string, args ...string) result {
		full := append([]string{"build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE=" + base}, args...)
		return imgbuildEnv(t, nil, "", append(full, ctxDir)...)
	}
	// The mirror of origin.invalid/busybox is ADDR/busybox (e.base).
	if r := build("origin.invalid/busybox:latest", "--registry-map", "origin.invalid="+e.registry); r.code != 0 {
		t.Errorf("build through --registry-map failed (exit %d)", r.code)
	}
	// Docker Hub's library/busybox, from a mirror with a path.
	if r := build("busybox:latest", "--registry-mirror", e.registry+"/mirror"); r.code != 0 {
		t.Errorf("build through --registry-mirror failed (exit %d)", r.code)
	}
	// A mirror without the image and no fallback: the pull fails.
	r := build("origin.invalid/nothere:latest", "--registry-map", "origin.invalid="+e.registry, "--skip-default-registry-fallback")
	if r.code == 0 {
		t.Error("build of an image the mirror lacks succeeded without fallback")
	}
	if strings.Contains(r.stderr, "origin.invalid/v2") || strings.Contains(r.stderr, "lookup origin.invalid") {
		t.Errorf("the original registry was tried despite --skip-default-registry-fallback")
	}
}

// TestRegistryFaultsTokenDebugLogE2E pushes with the real binary, at debug
// level, through a token registry that fails a blob upload with 503 and
// expires the token half-way through another; the push succeeds with the
// right digest, and neither the password nor any token is in the log.
func TestRegistryFaultsTokenDebugLogE2E(t *testing.T) {
	e := setup(t)
	p := testutil.StartFaultProxy(t, testutil.StartRegistry(t))
	pass := "pw-" + randHex(t)
	p.RequireTokens("alice", pass)
	p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch {
		case testutil.RequestKind(r) == "PATCH upload" && n == 1:
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return true
		case testutil.RequestKind(r) == "PATCH upload" && n == 2:
			testutil.ReadHalf(r)
			p.ExpireTokens()
			p.Challenge(w, r)
			return true
		}
		return false
	})
	auth := base64.StdEncoding.EncodeToString([]byte("alice:" + pass))
	cfg := dockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, p.Host, auth))
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN head -c 100000 /dev/urandom > /blob\n"})
	tag := p.Host + "/faults/app:v1"
	r := imgbuildEnv(t, []string{"DOCKER_CONFIG=" + cfg}, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain",
		"--log-level", "debug", "--build-arg", "BASE="+e.base, "-t", tag, "--push", ctxDir)
	if r.code != 0 {
		t.Fatalf("push through faults failed (exit %d)", r.code)
	}
	if len(p.Tokens()) < 2 {
		t.Errorf("%d tokens issued, want a refresh after the expiry", len(p.Tokens()))
	}
	p.SetFault(nil)
	ref, err := name.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: pass}))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != strings.TrimSpace(r.stdout) {
		t.Errorf("registry serves %s, imgbuild printed %s", d, strings.TrimSpace(r.stdout))
	}
	for _, secret := range append([]string{pass, auth}, p.Tokens()...) {
		if strings.Contains(r.stderr+r.stdout, secret) {
			t.Errorf("credential %.8s… appears in imgbuild's debug output", secret)
		}
	}
}

// TestRegistryPullFaultsE2E pulls the base image through a registry that
// rate-limits the first manifest request (429, Retry-After: 1) and fails
// the first blob download with 503; the build still succeeds.
func TestRegistryPullFaultsE2E(t *testing.T) {
	e := setup(t)
	p := testutil.StartFaultProxy(t, e.registry)
	p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch k := testutil.RequestKind(r); {
		case (k == "HEAD manifest" || k == "GET manifest") && p.Count("HEAD manifest")+p.Count("GET manifest") == 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
			return true
		case k == "GET blob" && n == 1:
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	base := p.Host + strings.TrimPrefix(e.base, e.registry)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n"})
	start := time.Now()
	r := imgbuildEnv(t, nil, "", "build", "--root", t.TempDir(), "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE="+base, ctxDir)
	if r.code != 0 {
		t.Fatalf("build through pull faults failed (exit %d)", r.code)
	}
	if time.Since(start) < time.Second {
		t.Errorf("build took %v, less than the 1s Retry-After", time.Since(start))
	}
	if p.Count("GET blob") < 2 {
		t.Errorf("%d blob downloads, want the failed one retried", p.Count("GET blob"))
	}
}

// TestRegistryCacheAuthE2E exports and imports a registry build cache on a
// password-protected TLS registry: the same keychain and CA settings serve
// the cache as pulls and pushes.
func TestRegistryCacheAuthE2E(t *testing.T) {
	e := setup(t)
	s := startSecure(t)
	auth := base64.StdEncoding.EncodeToString([]byte(s.user + ":" + s.pass))
	env := []string{"DOCKER_CONFIG=" + dockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.reg.Addr, auth))}
	cert := "--registry-certificate=" + s.reg.Addr + "=" + s.reg.CAFile
	// The RUN step's output is random: only the cache can reproduce it.
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM $BASE\nRUN head -c 32 /dev/urandom > /random\n"})
	cacheRef := s.reg.Addr + "/cache/app:buildcache"

	first := s.build(t, e, env, cert, "--cache-to", "type=registry,ref="+cacheRef+",mode=max", ctxDir)
	if first.code != 0 {
		t.Fatalf("build exporting the cache failed (exit %d)", first.code)
	}
	// A fresh state dir: only the registry cache can give the same digest.
	r := s.build(t, e, env, cert, "--cache-from", "type=registry,ref="+cacheRef, ctxDir)
	if r.code != 0 {
		t.Fatalf("build importing the cache failed (exit %d)", r.code)
	}
	if r.stdout != first.stdout {
		t.Errorf("rebuild gave %s, want %s from the registry cache", strings.TrimSpace(r.stdout), strings.TrimSpace(first.stdout))
	}
	if strings.Contains(r.stderr, s.pass) || strings.Contains(r.stderr, auth) {
		t.Error("a credential appears in the output")
	}
}
