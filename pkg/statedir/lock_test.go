package statedir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a lock holder in a child process:
// flock is per open file, so a real second process is the honest test.
const helperEnv = "IMGBUILD_TEST_LOCK_HOLDER"

func TestMain(m *testing.M) {
	if root := os.Getenv(helperEnv); root != "" {
		os.Exit(holdLock(root))
	}
	os.Exit(m.Run())
}

// holdLock takes the lock, says "locked" on stdout and holds it until stdin
// closes.
func holdLock(root string) int {
	l, err := acquire(context.Background(), root, LockOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := l.Release(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startHolder runs a child process holding root's lock. Closing the returned
// writer makes it release the lock and exit.
func startHolder(t *testing.T, root string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+root)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("holder did not lock: %q, %v", line, err)
	}
	return cmd, stdin
}

func TestAcquireRelease(t *testing.T) {
	t.Parallel()
	root := t.TempDir() + "/state"
	l, err := acquire(t.Context(), root, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("state dir mode = %v, want 0700", got)
	}
	// flock is per open file, so a second Acquire in the same process
	// conflicts too, and names this process.
	_, err = acquire(t.Context(), root, LockOptions{})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Acquire: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	l, err = acquire(t.Context(), root, LockOptions{})
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestAcquireHeldByOtherProcess(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	holder, _ := startHolder(t, root)

	start := time.Now()
	_, err := acquire(t.Context(), root, LockOptions{})
	if d := time.Since(start); d > time.Second {
		t.Errorf("Acquire took %v, want < 1s", d)
	}
	if err == nil {
		t.Fatal("Acquire succeeded while another process holds the lock")
	}
	msg := err.Error()
	for _, want := range []string{
		"state dir " + root + " is in use by pid " + strconv.Itoa(holder.Process.Pid),
		filepath.Base(os.Args[0]), // the holder's command line
		" since ",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.Holder.PID != holder.Process.Pid {
		t.Errorf("error %v is not an *InUseError for pid %d", err, holder.Process.Pid)
	}
}

func TestAcquireWait(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	holder, release := startHolder(t, root)

	var calls atomic.Int32
	var got Holder
	onWait := func(h Holder) {
		calls.Add(1)
		got = h
		// Let the holder go only once we are known to be waiting.
		time.AfterFunc(300*time.Millisecond, func() { release.Close() })
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err := acquire(ctx, root, LockOptions{Wait: true, OnWait: onWait})
	if err != nil {
		t.Fatalf("acquire(Wait): %v", err)
	}
	defer l.Release()
	if n := calls.Load(); n != 1 {
		t.Errorf("OnWait called %d times, want 1", n)
	}
	if got.PID != holder.Process.Pid || got.Since.IsZero() || got.Command == "" {
		t.Errorf("OnWait holder = %+v, want pid %d with command and time", got, holder.Process.Pid)
	}
}

func TestAcquireWaitCanceled(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	startHolder(t, root)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := acquire(ctx, root, LockOptions{Wait: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want deadline exceeded", err)
	}
}

func TestHolderString(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old := now.AddDate(0, 0, -2)
	for _, tc := range []struct {
		h    Holder
		want string
	}{
		{Holder{}, "another process"},
		{Holder{PID: 7}, "pid 7"},
		{Holder{PID: 7, Command: "imgbuild build .", Since: now}, "pid 7 (imgbuild build .) since " + now.Format("15:04:05")},
		{Holder{PID: 7, Since: old}, "pid 7 since " + old.Format(time.DateTime)},
	} {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.h, got, tc.want)
		}
	}
}

// TestAcquireClearsSetgid: a state dir made in an fsGroup volume (a
// set-group-ID parent) does not pass the bit on to what is made in it.
func TestAcquireClearsSetgid(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o2775); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(parent, "state")
	l, err := acquire(t.Context(), root, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, sub} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSetgid != 0 {
			t.Errorf("%s is set-group-ID: %v", d, fi.Mode())
		}
	}
}
