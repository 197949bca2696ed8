package testutil

import (
	"net/http"
	"testing"
)

func TestStartSecureRegistry(t *testing.T) {
	t.Parallel()
	reg := StartSecureRegistry(t, SecureRegistryOptions{Users: map[string]string{"alice": "s3cret"}, TLS: true})
	get := func(user, pass string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+reg.Addr+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := reg.Client().Do(req)
		if err != nil {
			t.Fatalf("GET /v2/ over TLS with the test CA: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("", ""); got != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", got)
	}
	if got := get("alice", "wrong"); got != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", got)
	}
	if got := get("alice", "s3cret"); got != http.StatusOK {
		t.Errorf("right password: %d, want 200", got)
	}
	// Without the test CA, the certificate is not trusted.
	if _, err := http.Get("https://" + reg.Addr + "/v2/"); err == nil {
		t.Error("the registry's certificate is trusted without the test CA")
	}
}
