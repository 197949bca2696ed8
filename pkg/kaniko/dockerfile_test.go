package kaniko

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFetchDockerfile(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/Dockerfile":
			w.Write([]byte("FROM scratch\n"))
		case "/huge":
			w.Write(make([]byte, maxDockerfileSize+1))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		url, want, wantErr string
	}{
		{url: srv.URL + "/Dockerfile", want: "FROM scratch\n"},
		{url: srv.URL + "/missing", wantErr: "downloading dockerfile " + srv.URL + "/missing: the server answered 404 Not Found"},
		{url: srv.URL + "/huge", wantErr: "larger than 4 MiB"},
		{url: "http://user:secret@127.0.0.1:1/Dockerfile", wantErr: "downloading dockerfile http://xxxxx@127.0.0.1:1/Dockerfile: dial tcp"},
	} {
		got, err := FetchDockerfile(t.Context(), tc.url, nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: error %v, want one containing %q", tc.url, err, tc.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
	for s, want := range map[string]bool{"https://x/Dockerfile": true, "http://x/D": true, "Dockerfile": false, "./https://x": false, "git://x": false} {
		if IsDockerfileURL(s) != want {
			t.Errorf("IsDockerfileURL(%q) = %v", s, !want)
		}
	}
}
