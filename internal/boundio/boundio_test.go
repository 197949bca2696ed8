package boundio

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	t.Parallel()
	over := errors.New("over")
	r := &Reader{R: strings.NewReader(strings.Repeat("x", 100)), Max: 100, Err: over}
	if n, err := io.Copy(io.Discard, r); err != nil || n != 100 || r.Over() {
		t.Errorf("exactly at the bound: %d bytes, %v, over %v", n, err, r.Over())
	}
	r = &Reader{R: strings.NewReader(strings.Repeat("x", 101)), Max: 100, Err: over}
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, over) || !r.Over() {
		t.Errorf("one byte over: %v, want %v", err, over)
	}
}
