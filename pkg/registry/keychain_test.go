package registry

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// isolateEnv clears every variable a keychain reads and points HOME and
// DOCKER_CONFIG at empty directories, so only what a test sets counts.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, v := range os.Environ() {
		k, _, _ := strings.Cut(v, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "AZURE_") || strings.HasPrefix(k, "GOOGLE_") ||
			strings.HasPrefix(k, "GCE_") || strings.HasPrefix(k, "CLOUDSDK_") || k == "GITHUB_TOKEN" || k == "GITHUB_ACTOR" ||
			k == "REGISTRY_AUTH_FILE" || k == "XDG_RUNTIME_DIR" || k == "XDG_CONFIG_HOME" {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("PATH", t.TempDir()) // no gcloud, no docker-credential-*
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ECR_DISABLE_CACHE", "true")
}

func resolve(t *testing.T, kc authn.Keychain, reg string) *authn.AuthConfig {
	t.Helper()
	r, err := name.NewRegistry(reg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(r)
	if err != nil {
		t.Fatalf("resolving %s: %v", reg, err)
	}
	c, err := a.Authorization()
	if err != nil {
		t.Fatalf("authorization for %s: %v", reg, err)
	}
	return c
}

func writeJSON(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestKeychainDockerConfigAndAuthFile: docker config.json answers first,
// $REGISTRY_AUTH_FILE (podman's auth.json) for registries it lacks.
func TestKeychainDockerConfigAndAuthFile(t *testing.T) {
	isolateEnv(t)
	writeJSON(t, filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"),
		fmt.Sprintf(`{"auths":{"both.example.com":{"auth":%q}}}`, b64("docker:d-pass")))
	authFile := filepath.Join(t.TempDir(), "auth.json")
	writeJSON(t, authFile, fmt.Sprintf(`{"auths":{"both.example.com":{"auth":%q},"podman.example.com":{"auth":%q},"docker.io":{"auth":%q}}}`,
		b64("podman:p-pass"), b64("podman:p-pass2"), b64("hub:h-pass")))
	t.Setenv("REGISTRY_AUTH_FILE", authFile)

	kc := NewKeychain()
	for reg, want := range map[string]string{
		"both.example.com":   "docker:d-pass",
		"podman.example.com": "podman:p-pass2",
		"index.docker.io":    "hub:h-pass",
		"none.example.com":   ":",
	} {
		c := resolve(t, kc, reg)
		if got := c.Username + ":" + c.Password; got != want {
			t.Errorf("%s: got %q, want %q", reg, got, want)
		}
	}
}

// TestKeychainGHCR: GITHUB_TOKEN answers for ghcr.io only.
func TestKeychainGHCR(t *testing.T) {
	isolateEnv(t)
	t.Setenv("GITHUB_TOKEN", "ghp_stubtoken")
	kc := NewKeychain()
	if c := resolve(t, kc, "ghcr.io"); c.Password != "ghp_stubtoken" {
		t.Errorf("ghcr.io: password %q, want the GITHUB_TOKEN", c.Password)
	}
	if c := resolve(t, kc, "other.example.com"); c.Password != "" {
		t.Errorf("GITHUB_TOKEN offered to another registry")
	}
}

// TestKeychainECR points the AWS SDK at a stub ECR endpoint
// (AWS_ENDPOINT_URL_ECR) with static keys, as IRSA or an instance role
// would supply them, and expects the token it hands out.
func TestKeychainECR(t *testing.T) {
	isolateEnv(t)
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target = r.Header.Get("X-Amz-Target")
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprintf(w, `{"authorizationData":[{"authorizationToken":%q,"expiresAt":4102444800,"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}`, b64("AWS:ecr-stub-password"))
	}))
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSTUB")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "stub")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL_ECR", srv.URL)

	c := resolve(t, NewKeychain(), "123456789012.dkr.ecr.us-east-1.amazonaws.com")
	if c.Username != "AWS" || c.Password != "ecr-stub-password" {
		t.Errorf("got %q/%q, want AWS/ecr-stub-password", c.Username, c.Password)
	}
	if !strings.HasSuffix(target, "GetAuthorizationToken") {
		t.Errorf("stub ECR saw target %q, want GetAuthorizationToken", target)
	}
}

// TestKeychainGoogleMetadata points Google's metadata client at a stub
// (GCE_METADATA_HOST), as workload identity on GKE serves it.
func TestKeychainGoogleMetadata(t *testing.T) {
	isolateEnv(t)
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.Header().Set("Metadata-Flavor", "Google")
		if r.Header.Get("Metadata-Flavor") != "Google" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/token"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"ya29.stub-token","expires_in":3600,"token_type":"Bearer"}`)
		case strings.HasSuffix(r.URL.Path, "/project-id"):
			fmt.Fprint(w, "stub-project")
		default:
			fmt.Fprint(w, "")
		}
	}))
	defer srv.Close()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))

	c := resolve(t, NewKeychain(), "us-docker.pkg.dev")
	if c.Password != "ya29.stub-token" {
		t.Errorf("got password %q, want the metadata server's token (requests: %v)", c.Password, paths)
	}
}

// TestLoginLogout writes and removes credentials the way docker does, Docker
// Hub under its legacy key, and reads them back through the keychain.
func TestLoginLogout(t *testing.T) {
	isolateEnv(t)
	file, err := Login("docker.io", "hubuser", "hubpass")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"https://index.docker.io/v1/"`) || !strings.Contains(string(cfg), b64("hubuser:hubpass")) {
		t.Errorf("config.json does not hold Docker Hub's credentials under its legacy key:\n%s", cfg)
	}
	if _, err := Login("reg.example.com:5000", "u", "p"); err != nil {
		t.Fatal(err)
	}
	kc := NewKeychain()
	if c := resolve(t, kc, "index.docker.io"); c.Username != "hubuser" || c.Password != "hubpass" {
		t.Errorf("Docker Hub: got %q/%q", c.Username, c.Password)
	}
	if c := resolve(t, kc, "reg.example.com:5000"); c.Username != "u" || c.Password != "p" {
		t.Errorf("reg.example.com:5000: got %q/%q", c.Username, c.Password)
	}
	for _, server := range []string{"index.docker.io", "reg.example.com:5000"} {
		had, err := Logout(server)
		if err != nil || !had {
			t.Errorf("Logout(%s) = %v, %v; want true, nil", server, had, err)
		}
		if had, _ := Logout(server); had {
			t.Errorf("second Logout(%s) found credentials", server)
		}
	}
	if c := resolve(t, NewKeychain(), "index.docker.io"); c.Username != "" {
		t.Errorf("credentials left after logout: %q", c.Username)
	}
}
