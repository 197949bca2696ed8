package builder

import (
	"os"
	"path/filepath"
)

// writeAtomic writes data to path (mode 0600) through a temporary file of
// its own in the same directory and a rename, so readers see the old or the
// new content, and concurrent writers do not trip over each other's
// temporary file.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	return os.Rename(tmp.Name(), path)
}
