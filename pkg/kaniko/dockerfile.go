package kaniko

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// maxDockerfileSize bounds a downloaded Dockerfile: a Dockerfile is text,
// and a URL that answers with an image or an endless stream should fail.
const maxDockerfileSize = 4 << 20

// dockerfileTimeout bounds the download, which kaniko leaves unbounded.
const dockerfileTimeout = 2 * time.Minute

var dockerfileURL = regexp.MustCompile(`^https?://`)

// IsDockerfileURL reports whether kaniko's --dockerfile value is a URL
// (http:// or https://), which kaniko downloads instead of reading a file.
func IsDockerfileURL(s string) bool { return dockerfileURL.MatchString(s) }

// FetchDockerfile downloads the Dockerfile at rawURL, as kaniko does for a
// --dockerfile URL. Unlike kaniko, which parses whatever the server
// answers, an answer other than 200 is an error naming the URL and the
// status. client nil is http.DefaultClient (proxies from the environment).
func FetchDockerfile(ctx context.Context, rawURL string, client *http.Client) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, dockerfileTimeout)
	defer cancel()
	name := redactURL(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("dockerfile %s: %w", name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the URL, credentials and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("downloading dockerfile %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading dockerfile %s: the server answered %s", name, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDockerfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("downloading dockerfile %s: %w", name, err)
	}
	if len(b) > maxDockerfileSize {
		return nil, fmt.Errorf("downloading dockerfile %s: larger than %d MiB; is it a Dockerfile?", name, maxDockerfileSize>>20)
	}
	return b, nil
}
