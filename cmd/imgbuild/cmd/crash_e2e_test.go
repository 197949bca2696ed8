package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCacheCorruptDatabase garbles each of the state dir's databases in turn:
// the next build warns, sets the database aside and succeeds.
func TestCacheCorruptDatabase(t *testing.T) {
	e := setup(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo built > /built\n"})
	for _, db := range []string{"cache.db", "history.db", "runc-*/metadata_v2.db", "runc-*/snapshots/metadata.db", "runc-*/containerdmeta.db"} {
		t.Run(strings.ReplaceAll(db, "/", "_"), func(t *testing.T) {
			root := t.TempDir()
			if r := e.build(t, root, dir); r.code != 0 {
				t.Fatal(r.stderr)
			}
			paths, _ := filepath.Glob(filepath.Join(root, db))
			if len(paths) != 1 {
				t.Fatalf("%s matches %v", db, paths)
			}
			garble(t, paths[0])
			r := e.build(t, root, dir)
			if r.code != 0 {
				t.Fatalf("build on a state dir with a garbled %s failed:\n%s", db, r.stderr)
			}
			if !strings.Contains(r.stderr, "is corrupt") || !strings.Contains(r.stderr, "set aside") {
				t.Errorf("no warning about the corrupt database:\n%s", r.stderr)
			}
			aside, _ := filepath.Glob(filepath.Join(root, "*.corrupt-*"))
			if len(aside) == 0 {
				t.Error("nothing was set aside")
			}
			// The state dir is sound again: a third build is quiet.
			if r := e.build(t, root, dir); r.code != 0 || strings.Contains(r.stderr, "corrupt") {
				t.Errorf("third build: exit %d\n%s", r.code, r.stderr)
			}
			// prune removes the set-aside copies.
			if r := imgbuild(t, "", "prune", "--root", root, "--runc", e.runc); r.code != 0 {
				t.Fatal(r.stderr)
			}
			if aside, _ := filepath.Glob(filepath.Join(root, "*.corrupt-*")); len(aside) != 0 {
				t.Errorf("set-aside copies after prune: %v", aside)
			}
		})
	}
}

// garble overwrites a file with random bytes of the same size.
func garble(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, fi.Size())
	for i := range junk {
		junk[i] = byte(rand.IntN(256))
	}
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCacheKillNine kills imgbuild with SIGKILL at random points of pulls,
// RUN steps, exports and pushes, then checks that the state dir still works:
// a clean build succeeds with correct content, and no container, mount or
// process of the state dir survives.
func TestCacheKillNine(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	dir := writeContext(t, map[string]string{"Dockerfile": `ARG BASE
FROM ${BASE}
ARG N
RUN for i in $(seq 1 300); do echo $i > /f$i; done && sleep 0.3 && echo "done $N" > /marker
RUN --mount=type=cache,target=/c echo $N >> /c/log && sleep 0.2 && cp /c/log /seen
COPY Dockerfile /Dockerfile
`})
	ref := e.registry + "/e2e/killed:latest"
	var ids []string // RUN containers the kills interrupted
	const runs = 20
	for i := range runs {
		args := []string{"build", "--root", root, "--runc", e.runc, "--progress", "plain",
			"--build-arg", "BASE=" + e.base, "--build-arg", fmt.Sprintf("N=%d", i), "-t", ref, "--push", dir}
		cmd := exec.Command(binary, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(50+rand.IntN(1200)) * time.Millisecond
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		t.Logf("run %d killed after %v (%v); last output: %s", i, delay, err, lastLines(stderr.String(), 2))
		ids = append(ids, execIDs(root)...)
	}
	r := e.build(t, root, "--build-arg", "N=final", "-t", ref, "--push", dir)
	if r.code != 0 {
		t.Fatalf("build after kill -9s failed:\n%s", r.stderr)
	}
	fs := files(t, pull(t, ref))
	if fs["marker"] != "done final\n" || fs["f300"] != "300\n" || fs["Dockerfile"] == "" {
		t.Errorf("image after kill -9s: marker %q, f300 %q", fs["marker"], fs["f300"])
	}
	if !strings.HasSuffix(fs["seen"], "final\n") {
		t.Errorf("cache mount log = %q", fs["seen"])
	}
	assertNothingLeft(t, e, root)
	assertNoContainerState(t, ids)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// assertNothingLeft fails if a runc container, a mount or a process of the
// state dir root is still around.
func assertNothingLeft(t *testing.T, e e2e, root string) {
	t.Helper()
	out, err := exec.Command(e.runc, "list", "--format", "json").Output()
	if err == nil {
		var list []struct{ ID, Bundle string }
		_ = json.Unmarshal(out, &list)
		for _, c := range list {
			if strings.HasPrefix(c.Bundle, root) {
				t.Errorf("runc container left behind: %s (%s)", c.ID, c.Bundle)
			}
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Anywhere, not only under root: a snapshot of root's mounted in the
	// host's /tmp is left behind too.
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, root) {
			t.Errorf("mount left behind: %s", line)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(root)) {
			t.Errorf("process left behind: %s: %q", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

// TestCacheKillNineShared kills one of three builds sharing a state dir at a
// random point: whether it was the owner or a joined build, the other two
// succeed, and a clean build afterwards leaves nothing behind.
func TestCacheKillNineShared(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	const runs, builds = 3, 3
	var ids []string
	for i := range runs {
		var cmds []*exec.Cmd
		var logs []*bytes.Buffer
		for j := range builds {
			dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf(
				"ARG BASE\nFROM ${BASE}\nRUN echo common-%d && sleep 0.5\nRUN echo %d-%d > /id && sleep 0.3\n", i, i, j)})
			cmd := exec.Command(binary, "build", "--root", root, "--runc", e.runc, "--progress", "plain",
				"--build-arg", "BASE="+e.base, dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, logs = append(cmds, cmd), append(logs, &stderr)
		}
		victim := rand.IntN(builds)
		delay := time.Duration(200+rand.IntN(1000)) * time.Millisecond
		time.Sleep(delay)
		_ = cmds[victim].Process.Kill()
		ids = append(ids, execIDs(root)...)
		for j, cmd := range cmds {
			err := cmd.Wait()
			if j == victim {
				continue
			}
			if err != nil {
				t.Errorf("run %d: build %d failed after build %d was killed at %v: %v\n%s", i, j, victim, delay, err, logs[j])
			}
		}
		t.Logf("run %d: killed build %d after %v", i, victim, delay)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo final > /final\n"})
	if r := e.build(t, root, dir); r.code != 0 {
		t.Fatalf("clean build after the kills failed:\n%s", r.stderr)
	}
	assertNothingLeft(t, e, root)
	assertNoContainerState(t, ids)
	if socks, _ := filepath.Glob(filepath.Join(root, "*.sock")); len(socks) != 0 {
		t.Errorf("sockets left behind: %v", socks)
	}
}

// execIDs lists the BuildKit exec IDs whose container bundles are in root:
// after a kill, the RUN containers that were being created or running.
func execIDs(root string) []string {
	dirs, _ := filepath.Glob(filepath.Join(root, "runc-*", "executor", "*"))
	var ids []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			ids = append(ids, filepath.Base(d))
		}
	}
	return ids
}

// assertNoContainerState fails if runc state or a cgroup of one of the
// containers ids survives.
func assertNoContainerState(t *testing.T, ids []string) {
	t.Helper()
	for _, id := range ids {
		left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "buildkit", id))
		left2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "buildkit", id))
		left3, _ := filepath.Glob(filepath.Join("/run/runc", id))
		for _, p := range append(append(left, left2...), left3...) {
			t.Errorf("container state left behind: %s", p)
		}
	}
	t.Logf("%d interrupted containers cleaned up", len(ids))
}

// orphanGrace is how long after a SIGKILL of imgbuild the processes of its
// RUN steps may still run: a CI runner that cancels a job must not keep them.
const orphanGrace = 5 * time.Second

// longStep returns a Dockerfile RUN step that runs for a while, and the
// unique argument by which its processes (the shell and sleep) are found.
func longStep(secs int) (run, marker string) {
	marker = fmt.Sprintf("%d.%06d", secs, rand.IntN(1_000_000))
	return fmt.Sprintf("RUN sleep %s; echo slept\n", marker), marker
}

// processesWith lists the processes whose command line contains any of
// needles, as "pid: command line".
func processesWith(needles ...string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				out = append(out, fmt.Sprintf("%s: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return out
}

// waitForProcess waits until a process whose command line contains marker
// runs: the RUN step has started.
func waitForProcess(t *testing.T, marker string, timeout time.Duration, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(processesWith(marker)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the step with %q did not start within %v:\n%s", marker, timeout, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertProcessesGone fails unless, within orphanGrace of killed, no
// process's command line contains any of needles.
func assertProcessesGone(t *testing.T, killed time.Time, what string, needles ...string) {
	t.Helper()
	deadline := killed.Add(orphanGrace)
	for {
		left := processesWith(needles...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d processes still run %v after the SIGKILL:\n%s", what, len(left), orphanGrace, strings.Join(left, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logBuffer collects a running process's output for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startImgbuild starts the imgbuild binary with args, its stderr collected.
func startImgbuild(t *testing.T, args ...string) (*exec.Cmd, *logBuffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	return cmd, startCmd(t, cmd)
}

// startCmd starts cmd with its stderr collected, and kills it at the end of
// the test.
func startCmd(t *testing.T, cmd *exec.Cmd) *logBuffer {
	t.Helper()
	stderr := &logBuffer{}
	cmd.Stderr = stderr
	// Wait must not wait for processes left holding stderr.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return stderr
}

// killNine SIGKILLs cmd, reaps it and returns when it was killed.
func killNine(t *testing.T, cmd *exec.Cmd) time.Time {
	t.Helper()
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	return killed
}

// TestCacheKillNineStopsRun SIGKILLs imgbuild while a RUN step sleeps: within
// orphanGrace neither the step's processes nor runc run any more, though no
// other imgbuild starts on the state dir.
func TestCacheKillNineStopsRun(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	run, marker := longStep(30)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n" + run})
	cmd, stderr := startImgbuild(t, "build", "--root", root, "--runc", e.runc, "--progress", "plain",
		"--build-arg", "BASE="+e.base, dir)
	waitForProcess(t, marker, time.Minute, stderr)
	killed := killNine(t, cmd)
	assertProcessesGone(t, killed, "root build", marker, root)

	// The next build cleans the mounts the killed one left.
	clean := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo clean\n"})
	if r := e.build(t, root, clean); r.code != 0 {
		t.Fatalf("build after the kill failed:\n%s", r.stderr)
	}
	assertNothingLeft(t, e, root)
}

// TestCacheKillNineSharedStopsRun SIGKILLs a build that joined another's
// state dir while its RUN step sleeps in the owner's process, then the owner
// while its own step sleeps: each time, the killed build's processes are gone
// within orphanGrace.
func TestCacheKillNineSharedStopsRun(t *testing.T) {
	e := setup(t)
	root := t.TempDir()
	ownerRun, ownerMarker := longStep(40)
	joinRun, joinMarker := longStep(30)
	ownerDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n" + ownerRun})
	joinDir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n" + joinRun})
	args := []string{"build", "--root", root, "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE=" + e.base}
	owner, ownerLog := startImgbuild(t, append(args, ownerDir)...)
	waitForProcess(t, ownerMarker, time.Minute, ownerLog)
	joiner, joinLog := startImgbuild(t, append(args, joinDir)...)
	waitForProcess(t, joinMarker, time.Minute, joinLog)
	if !strings.Contains(joinLog.String(), "sharing state dir") {
		t.Fatalf("the second build did not join the first:\n%s", joinLog)
	}

	killed := killNine(t, joiner)
	assertProcessesGone(t, killed, "joined build", joinMarker)
	if len(processesWith(ownerMarker)) == 0 {
		t.Fatalf("the owner's step stopped with the joined build:\n%s", ownerLog)
	}

	killed = killNine(t, owner)
	assertProcessesGone(t, killed, "owner build", ownerMarker, root)

	clean := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo clean\n"})
	if r := e.build(t, root, clean); r.code != 0 {
		t.Fatalf("build after the kills failed:\n%s", r.stderr)
	}
	assertNothingLeft(t, e, root)
}
