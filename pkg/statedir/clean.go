package statedir

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgbuild/imgbuild/internal/atomicfile"
)

// cleanFile marks a state dir whose last owner closed every database. The
// next owner takes it away before opening anything, so a process killed
// mid-build never leaves one behind.
const cleanFile = "clean-shutdown"

// bootIDFile changes on every boot: a mark from an earlier boot says nothing
// about what reached the disk before a power loss.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

type cleanMark struct {
	BootID string `json:"boot_id"`
	// Databases maps each database (relative to the state dir) to its size
	// and modification time when it was closed.
	Databases map[string]fileStamp `json:"databases"`
}

type fileStamp struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"mtime_ns"`
}

// MarkClean records that the state dir's databases were closed cleanly. The
// caller holds the state dir's lock and has closed BuildKit.
func markClean(root string) error {
	boot, err := BootID()
	if err != nil {
		return err
	}
	m := cleanMark{BootID: boot, Databases: databaseStamps(root)}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(root, cleanFile), b, 0o600)
}

// TakeClean removes the mark [Dir.MarkClean] wrote and reports whether it
// vouches for the databases: written in this boot, and every database still
// has the size and modification time it had then. Only then may the
// consistency check of [Dir.RecoverDatabases] be skipped. The caller holds the
// state dir's lock.
func takeClean(root string) bool {
	p := filepath.Join(root, cleanFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	if err := os.Remove(p); err != nil {
		return false
	}
	var m cleanMark
	if err := json.Unmarshal(b, &m); err != nil {
		return false
	}
	boot, err := BootID()
	if err != nil || m.BootID == "" || boot != m.BootID {
		return false
	}
	return maps.Equal(m.Databases, databaseStamps(root))
}

// BootID identifies the running boot of the kernel: what was probed or
// written under another one may not hold any more.
func BootID() (string, error) {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// databaseStamps stats the databases RecoverDatabases checks.
func databaseStamps(root string) map[string]fileStamp {
	paths := append([]string{}, rootDatabases...)
	for _, wk := range At(root).Workers() {
		w := wk.Path()
		if strings.Contains(filepath.Base(w), corruptSuffix) {
			continue
		}
		for _, db := range workerDatabases {
			paths = append(paths, filepath.Join(filepath.Base(w), db))
		}
	}
	out := map[string]fileStamp{}
	for _, p := range paths {
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil {
			out[p] = fileStamp{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		}
	}
	return out
}
