package statedir

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
)

// GCConfig is the state dir's automatic garbage collection, run when a build
// ends. The zero value is the default policy ([Dir.DefaultMaxUsed]).
type GCConfig struct {
	// Disabled turns automatic collection off. The default is on.
	Disabled bool
	// MaxUsed is the build cache size above which the least recently used
	// records are removed. The default, 0, means [Dir.DefaultMaxUsed].
	MaxUsed int64
	// KeepResults is how many of the most recent built images the image
	// store keeps. The default, 0, means [DefaultKeepResults].
	KeepResults int
}

// DefaultKeepResults is how many recent build results the image store keeps
// when GCConfig.KeepResults is 0: enough for the pushes and outputs of a few
// builds in flight, little enough that old images do not pile up.
const DefaultKeepResults = 10

// Bounds of the default cache size: a CI runner's disk is shared with the
// workspace, so the cache takes a tenth of the disk, between these.
const (
	minDefaultMaxUsed = 2e9  // 2 GB
	maxDefaultMaxUsed = 20e9 // 20 GB
)

// DefaultMaxUsed is the default cache size bound for a state dir at root:
// 10% of its filesystem, at least 2 GB and at most 20 GB.
func defaultMaxUsed(root string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		return minDefaultMaxUsed
	}
	n := int64(st.Blocks) * st.Bsize / 10
	return min(max(n, minDefaultMaxUsed), maxDefaultMaxUsed)
}

// ParseSize parses a size such as "512MB", "10GiB" or "1073741824". Units
// are binary (1 KB = 1024 bytes), as in docker's --memory and buildkitd's
// keep-storage.
func ParseSize(s string) (int64, error) {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	return n, nil
}

// PruneOptions selects what [Prune]-style operations remove.
type PruneOptions struct {
	// All removes internal and shared records too (base image layers,
	// cache mounts), not only the build steps' own results. The default
	// keeps them.
	All bool
	// KeepStorage removes the least recently used records until the cache
	// is at most this size. The default, 0, removes every unused record
	// that matches.
	KeepStorage int64
	// KeepDuration keeps records created or used within this duration,
	// and image store results recorded within it. The default, 0, applies
	// no age limit.
	KeepDuration time.Duration
	// Filters are BuildKit record filters (e.g. "type==exec.cachemount").
	// The default is none.
	Filters []string
}

// UsageRecord is one record of the build cache.
type UsageRecord struct {
	ID          string
	Type        string // regular, source.local, exec.cachemount, internal, frontend, ...
	Description string
	Size        int64
	InUse       bool
	Shared      bool
	Mutable     bool
	UsageCount  int
	CreatedAt   time.Time
	LastUsedAt  time.Time // CreatedAt when not reused since
}
