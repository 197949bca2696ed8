package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// TestKeychainACR runs the ACR keychain against stubs of Azure AD and of
// the registry's token exchange, reached through an intercepting HTTPS
// proxy: the Azure SDK has fixed public endpoints, so the keychain runs in
// a child process whose HTTPS_PROXY and SSL_CERT_FILE point at the stubs.
func TestKeychainACR(t *testing.T) {
	if os.Getenv("IMGBUILD_ACR_CHILD") == "1" {
		c := resolve(t, NewKeychain(), "stub.azurecr.io")
		// A helper's "<token>" user means an identity (refresh) token.
		fmt.Printf("ACR-RESULT %s %s\n", c.Username, c.IdentityToken)
		return
	}
	ca, err := testutil.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	stub := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.Host+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Host == "login.microsoftonline.com" && strings.HasSuffix(r.URL.Path, "/oauth2/token"):
			if !strings.Contains(string(body), "client_secret=stub-secret") {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			exp := time.Now().Add(time.Hour).Unix()
			_ = json.NewEncoder(w).Encode(map[string]string{
				"access_token": "aad-stub-token", "token_type": "Bearer", "expires_in": "3600",
				"expires_on": fmt.Sprint(exp), "not_before": fmt.Sprint(exp - 3600), "resource": "https://management.azure.com/",
			})
		case r.Host == "stub.azurecr.io" && r.URL.Path == "/oauth2/exchange":
			if !strings.Contains(string(body), "access_token=aad-stub-token") {
				http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, `{"refresh_token":"acr-stub-refresh-token"}`)
		default:
			http.NotFound(w, r)
		}
	})
	proxy := testutil.StartInterceptProxy(t, ca, stub)

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKeychainACR$", "-test.v")
	home := t.TempDir()
	cmd.Env = []string{
		"IMGBUILD_ACR_CHILD=1",
		"HOME=" + home, "DOCKER_CONFIG=" + t.TempDir(), "PATH=" + t.TempDir(),
		"HTTPS_PROXY=" + proxy, "SSL_CERT_FILE=" + ca.File,
		"AZURE_TENANT_ID=00000000-0000-0000-0000-00000000feed", "AZURE_CLIENT_ID=stub-client", "AZURE_CLIENT_SECRET=stub-secret",
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var user, token string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "ACR-RESULT "); ok {
			user, token, _ = strings.Cut(rest, " ")
		}
	}
	if token != "acr-stub-refresh-token" {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf("got user %q, identity token %q, want the exchanged refresh token; stub saw %v; child output:\n%s", user, token, seen, out)
	}
}
