//go:build linux

package embedded

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCountingReader(t *testing.T) {
	t.Parallel()
	le := errors.New("over")
	r := &countingReader{r: strings.NewReader(strings.Repeat("x", 100)), left: 100, err: le}
	if n, err := io.Copy(io.Discard, r); err != nil || n != 100 {
		t.Errorf("exactly at the bound: %d bytes, %v", n, err)
	}
	r = &countingReader{r: strings.NewReader(strings.Repeat("x", 101)), left: 100, err: le}
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, le) {
		t.Errorf("one byte over: %v, want %v", err, le)
	}
}
