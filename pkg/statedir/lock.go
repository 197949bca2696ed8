package statedir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LockFile is the name of the lock file inside the state directory.
const LockFile = "imgbuild.lock"

// pollInterval is how often a waiting Acquire retries the lock. Polling keeps
// cancellation simple: a blocking flock cannot be interrupted by ctx.
const pollInterval = 100 * time.Millisecond

// maxCommandLen bounds the command line recorded in the lock file, so a huge
// argv does not end up in every "in use" error.
const maxCommandLen = 256

// ErrInUse is matched (with errors.Is) by the error Acquire returns when
// another process holds the state directory and LockOptions.Wait is false.
var ErrInUse = errors.New("state dir is in use")

// LockOptions configures [Dir.Acquire].
type LockOptions struct {
	// Wait makes Acquire block until the lock is free or ctx is done.
	// The default is to fail at once when another process holds it.
	Wait bool
	// OnWait, if set, is called once, before blocking, with the current
	// holder, so the caller can tell the user why nothing is happening.
	// The default is nil (no call).
	OnWait func(Holder)
}

// Holder describes the process holding a state directory. Any field may be
// zero when the lock file could not be read (for example while the holder is
// still writing it).
type Holder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

// String renders the holder as "pid 123 (imgbuild build .) since 12:01:02".
func (h Holder) String() string {
	if h.PID == 0 {
		return "another process"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d", h.PID)
	if h.Command != "" {
		fmt.Fprintf(&b, " (%s)", h.Command)
	}
	if !h.Since.IsZero() {
		since := h.Since.Local()
		layout := "15:04:05"
		// A holder from another day is likely stuck; show the date too.
		if since.Format(time.DateOnly) != time.Now().Format(time.DateOnly) {
			layout = time.DateTime
		}
		fmt.Fprintf(&b, " since %s", since.Format(layout))
	}
	return b.String()
}

// InUseError is returned by [Dir.Acquire] when the state directory is held by
// another process. It matches [ErrInUse].
type InUseError struct {
	Dir    string
	Holder Holder
}

var _ error = (*InUseError)(nil)

// Error implements error.
func (e *InUseError) Error() string {
	return fmt.Sprintf("state dir %s is in use by %s", e.Dir, e.Holder)
}

// Is reports whether target is [ErrInUse].
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// Lock is an exclusive hold on a state directory. It is released by
// [Lock.Release] or, if the process dies, by the kernel.
type Lock struct {
	mu sync.Mutex
	f  *os.File
}

// Acquire takes an exclusive flock(2) on root/imgbuild.lock, creating root
// with mode 0700 if needed, and records the caller as the [Holder] in the lock
// file. The lock is advisory and per open file, so it also excludes a second
// Acquire within the same process.
//
// When another process holds the lock, Acquire returns an [*InUseError] at
// once, or with opts.Wait calls opts.OnWait and waits until the lock is free
// or ctx is done.
func acquire(ctx context.Context, root string, opts LockOptions) (*Lock, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	if err := clearSetgid(root); err != nil {
		return nil, err
	}
	path := filepath.Join(root, LockFile)
	// The file is never removed: unlinking a lock file lets two processes
	// lock different inodes under the same name.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !locked {
		holder := readHolder(f)
		if !opts.Wait {
			f.Close()
			return nil, &InUseError{Dir: root, Holder: holder}
		}
		if opts.OnWait != nil {
			opts.OnWait(holder)
		}
		if err := waitLock(ctx, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("waiting for state dir %s (held by %s): %w", root, holder, err)
		}
	}
	if err := writeHolder(f); err != nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Release clears the holder record and drops the lock. Calling it more than
// once is safe.
func (l *Lock) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Clear the record first so a waiter never reports a stale holder.
	truncErr := f.Truncate(0)
	unlockErr := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	closeErr := f.Close()
	if err := errors.Join(truncErr, unlockErr, closeErr); err != nil {
		return fmt.Errorf("releasing state dir lock: %w", err)
	}
	return nil
}

// tryLock attempts a non-blocking exclusive flock.
func tryLock(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
	}
}

func waitLock(ctx context.Context, f *os.File) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
			locked, err := tryLock(f)
			if err != nil {
				return err
			}
			if locked {
				return nil
			}
		}
	}
}

// readHolder reads the holder record. The holder writes it just after taking
// the lock, so an empty or partial file is retried briefly before giving up
// and returning a zero Holder.
func readHolder(f *os.File) Holder {
	for range 5 {
		var h Holder
		b, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<10))
		if err == nil && json.Unmarshal(b, &h) == nil && h.PID != 0 {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	return Holder{}
}

func writeHolder(f *os.File) error {
	// Only the program and its subcommand: flags may carry build args or
	// other values that must not reach another job's log.
	var args []string
	for i, a := range os.Args {
		if i == 0 {
			args = append(args, filepath.Base(a))
			continue
		}
		if !strings.HasPrefix(a, "-") {
			args = append(args, a)
		}
		break
	}
	cmd := strings.Join(args, " ")
	if len(cmd) > maxCommandLen {
		cmd = cmd[:maxCommandLen] + "..."
	}
	b, err := json.Marshal(Holder{PID: os.Getpid(), Command: cmd, Since: time.Now()})
	if err != nil {
		return fmt.Errorf("encoding lock holder: %w", err)
	}
	b = append(b, '\n')
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("writing lock holder: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("writing lock holder: %w", err)
	}
	return nil
}

// clearSetgid drops the set-group-ID bit a state dir inherits in a
// Kubernetes volume with fsGroup: directories made below it would inherit
// it too, and a snapshot's new directories (COPY, WORKDIR) would carry it
// into the image.
func clearSetgid(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSetgid == 0 {
		return nil
	}
	if err := os.Chmod(root, fi.Mode().Perm()|fi.Mode()&os.ModeSticky); err != nil {
		return fmt.Errorf("clearing the set-group-ID bit of state dir %s: %w", root, err)
	}
	return nil
}
