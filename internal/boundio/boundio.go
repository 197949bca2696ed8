// Package boundio bounds what a reader may deliver: the pull limits on
// manifests, configs and unpacked layers all stop a stream the same way.
package boundio

import "io"

// Reader reads from R and fails with Err once more than Max bytes have
// passed. N counts the bytes read.
type Reader struct {
	R   io.Reader
	Max int64
	Err error
	N   int64
}

// Over reports whether more than Max bytes arrived.
func (r *Reader) Over() bool { return r.N > r.Max }

// Read implements io.Reader. It reads at most one byte past Max, which is
// how it tells "exactly Max" from "more".
func (r *Reader) Read(p []byte) (int, error) {
	if r.Over() {
		return 0, r.Err
	}
	if left := r.Max - r.N + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := r.R.Read(p)
	r.N += int64(n)
	if r.Over() {
		return n, r.Err
	}
	return n, err
}
