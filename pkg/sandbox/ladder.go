//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Executor is how RUN steps run: one rung of a ladder from the strongest
// isolation this process can get down to none, as kaniko runs them.
type Executor string

const (
	// Auto lets [ChooseExecutor] pick the strongest rung that works here.
	Auto Executor = "auto"
	// Runc runs each step with runc in its own namespaces (PID, mount,
	// IPC, UTS) and a fresh /proc: root with CAP_SYS_ADMIN, or a user
	// namespace that may mount procfs.
	Runc Executor = "runc"
	// RuncNoSandbox is runc in our own user namespace with this pod's /proc
	// bound in, because a fresh procfs cannot be mounted (a masked /proc):
	// BuildKit's "no process sandbox". Steps share imgbuild's PID namespace.
	RuncNoSandbox Executor = "runc-no-sandbox"
	// InPlace runs each step in this container's own root filesystem, made
	// to hold the step's snapshot, with no namespace and no mount: the
	// default Kubernetes pod, whose seccomp profile refuses unshare and mount.
	InPlace Executor = "inplace"
)

// Executors are the names --executor takes.
var Executors = []Executor{Auto, Runc, RuncNoSandbox, InPlace}

// ParseExecutor checks an --executor value.
func ParseExecutor(s string) (Executor, error) {
	if s == "" {
		return Auto, nil
	}
	for _, e := range Executors {
		if string(e) == s {
			return e, nil
		}
	}
	names := make([]string, len(Executors))
	for i, e := range Executors {
		names[i] = string(e)
	}
	return "", fmt.Errorf("unknown executor %q: use %s", s, strings.Join(names, ", "))
}

// executorEnv pins the rung for the child of a re-exec into a user
// namespace, which must not probe again (its view differs).
const executorEnv = "_IMGBUILD_EXECUTOR"

// Choice is the rung picked for a build, and why.
type Choice struct {
	Executor Executor
	// UserNamespace is set when the build must re-execute itself in a new
	// user namespace first (see RunInUserNamespace).
	UserNamespace bool
	// Reason says which check ruled out the stronger rungs.
	Reason string
	// Pinned is set in the child of a re-exec, which keeps its parent's
	// choice (see PinExecutor).
	Pinned bool
}

// Line is the one line a build prints about its executor.
func (c Choice) Line() string {
	var iso string
	switch c.Executor {
	case Runc:
		iso = "RUN steps run in their own namespaces"
	case RuncNoSandbox:
		iso = "RUN steps share this build's PID namespace; its credentials are kept out of their reach"
	case InPlace:
		iso = "RUN steps run in this container's root filesystem, one at a time, without isolation from the build (as kaniko's do)"
	}
	if c.Reason == "" {
		return fmt.Sprintf("executor %s: %s", c.Executor, iso)
	}
	return fmt.Sprintf("executor %s (%s): %s", c.Executor, c.Reason, iso)
}

// probe is what ChooseExecutor asks of the machine; tests fake it.
type probe struct {
	root, capSysAdmin bool
	// userNS is nil when a user namespace can be created, else why not.
	userNS func() error
	// procfs is nil when a new user and PID namespace may mount a fresh
	// /proc, else why not.
	procfs func() error
	// buildContainer is nil when this is a container made for the build
	// (see InBuildContainer), else why it is not.
	buildContainer func(explicit bool) error
}

// machine is this process's probe. A function, not a variable set at init:
// every imgbuild process (the runc shim, the watchdog, each in-place step's
// start) would read /proc/self/status for nothing.
func machine() probe {
	return probe{
		root:           os.Geteuid() == 0,
		capSysAdmin:    hasCapSysAdmin(),
		userNS:         func() error { return probeChild("userns") },
		procfs:         func() error { return probeChild("procfs") },
		buildContainer: InBuildContainer,
	}
}

// ChooseExecutor picks the rung for want (Auto: the strongest that works),
// probing the machine the way the rungs would use it. An explicit rung the
// machine cannot give is an error that says why.
func ChooseExecutor(want Executor) (Choice, error) {
	if e := os.Getenv(executorEnv); e != "" {
		// The child of our own re-exec: already chosen.
		return Choice{Executor: Executor(e), Pinned: true}, nil
	}
	return machine().choose(want)
}

func (p probe) choose(want Executor) (Choice, error) {
	privileged := p.root && p.capSysAdmin
	switch want {
	case Runc:
		if privileged {
			return Choice{Executor: Runc}, nil
		}
		if err := p.userNS(); err != nil {
			return Choice{}, &PreflightError{Problem: "--executor runc needs a user namespace: " + err.Error(), Fix: userNSFix + "; or --executor inplace in a container made for the build"}
		}
		if err := p.procfs(); err != nil {
			return Choice{}, &PreflightError{Problem: "--executor runc needs a fresh /proc: " + err.Error(), Fix: procFix + "; or --executor runc-no-sandbox"}
		}
		return Choice{Executor: Runc, UserNamespace: true}, nil
	case RuncNoSandbox:
		if err := p.userNS(); err != nil {
			return Choice{}, &PreflightError{Problem: "--executor runc-no-sandbox needs a user namespace: " + err.Error(), Fix: userNSFix + "; or --executor inplace in a container made for the build"}
		}
		return Choice{Executor: RuncNoSandbox, UserNamespace: true}, nil
	case InPlace:
		if err := p.buildContainer(true); err != nil {
			return Choice{}, err
		}
		return Choice{Executor: InPlace, Reason: "--executor inplace"}, nil
	}
	if privileged {
		return Choice{Executor: Runc}, nil
	}
	why := "not root"
	if p.root {
		why = "no CAP_SYS_ADMIN"
	}
	errNS := p.userNS()
	if errNS == nil {
		errProc := p.procfs()
		if errProc == nil {
			return Choice{Executor: Runc, UserNamespace: true, Reason: why + ": in a user namespace"}, nil
		}
		return Choice{Executor: RuncNoSandbox, UserNamespace: true, Reason: why + "; " + errProc.Error()}, nil
	}
	if err := p.buildContainer(false); err != nil {
		return Choice{}, &PreflightError{
			Problem: fmt.Sprintf("%s, and %s; the in-place executor, which needs neither, runs only in a container made for the build: %v", why, errNS, err),
			Fix:     userNSFix + "; or run imgbuild's image (/kaniko/executor)",
		}
	}
	return Choice{Executor: InPlace, Reason: why + "; " + errNS.Error()}, nil
}

const (
	userNSFix = "allow user namespaces: in Kubernetes, securityContext.seccompProfile.type: Unconfined and appArmorProfile.type: Unconfined, or hostUsers: false; with docker or podman, --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
	procFix   = "in Kubernetes, securityContext.procMount: Unmasked (with hostUsers: false)"
)

// PinExecutor is the environment that makes the child of a re-exec keep c.
func PinExecutor(c Choice) string { return executorEnv + "=" + string(c.Executor) }

// probeEnv makes a re-executed imgbuild a probe (see ProbeMain).
const probeEnv = "_IMGBUILD_PROBE"

// probeChild runs imgbuild as a probe in a new user namespace (and, for
// "procfs", a new PID and mount namespace) and returns why it failed.
func probeChild(what string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.Args[0] = "imgbuild-probe"
	cmd.Env = []string{probeEnv + "=" + what}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	if what == "procfs" {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNS | syscall.CLONE_NEWPID
	}
	out, err := cmd.CombinedOutput()
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("unshare(CLONE_NEWUSER): %w (seccomp or AppArmor)", err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("unshare(CLONE_NEWUSER): %w (user.max_user_namespaces reached)", err)
	case err != nil && len(out) > 0:
		return errors.New(strings.TrimSpace(string(out)))
	case err != nil:
		return fmt.Errorf("unshare(CLONE_NEWUSER): %w", err)
	}
	return nil
}

// ProbeMain must be called first thing in main: in a probe child of
// ChooseExecutor it does the check and exits.
func ProbeMain() {
	switch os.Getenv(probeEnv) {
	case "":
		return
	case "userns":
		os.Exit(0)
	case "procfs":
		// Our own mount namespace: nothing reaches the parent's.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Printf("making / private in a new mount namespace: %v\n", err)
			os.Exit(1)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			fmt.Printf("mount(proc) in a user namespace: %v (a masked /proc)\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(2)
}

// buildContainerMarker is in imgbuild's release image (see the Dockerfile):
// a root filesystem made for the build, which the in-place executor may
// rewrite.
const buildContainerMarker = "/kaniko/.imgbuild-container"

// InBuildContainer reports (nil) whether this process runs in a container
// made for the build, whose root filesystem the in-place executor may
// rewrite: imgbuild's own image, or, when the rung is asked for explicitly
// (explicit), any container. On a host it says why not.
func InBuildContainer(explicit bool) error {
	if _, err := os.Stat(buildContainerMarker); err == nil {
		return nil
	}
	if !explicit {
		return fmt.Errorf("%s not found (not imgbuild's image)", buildContainerMarker)
	}
	if why := containerSign(); why != "" {
		return nil
	}
	return &PreflightError{
		Problem: "--executor inplace rewrites / and this looks like a host, not a container (no " + buildContainerMarker + ", /.dockerenv, /run/.containerenv or KUBERNETES_SERVICE_HOST, and PID 1 is " + pid1Name() + ")",
		Fix:     "run it in a container made for the build, such as imgbuild's image, or use --executor runc",
	}
}

// containerSign is the first sign that this is a container, or "".
func containerSign() string {
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return "KUBERNETES_SERVICE_HOST"
	}
	switch pid1Name() {
	case "systemd", "init", "":
		return ""
	}
	return "PID 1 is " + pid1Name()
}

func pid1Name() string {
	b, _ := os.ReadFile("/proc/1/comm")
	return strings.TrimSpace(string(b))
}

// HideFromSteps makes this process's /proc files (environ, memory, open
// files, root) unreadable to RUN steps running as the same user without
// CAP_SYS_PTRACE, which no rung gives them: in the lower rungs they share
// its PID namespace. It must be called again after every exec.
func HideFromSteps() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// stepEnv makes a re-executed imgbuild the start of an in-place RUN step
// (see StepMain).
const stepEnv = "_IMGBUILD_STEP"

// StepCommand is how the in-place executor starts a step: through imgbuild
// itself, which sets the umask a container's process starts with (022;
// imgbuild's own is 0, as buildkitd's) and then becomes path with args.
func StepCommand(path string, args []string) (string, []string, string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, "", err
	}
	return self, append([]string{"imgbuild-step", path}, args...), stepEnv + "=1", nil
}

// StepMain must be called first thing in main: in a step started by
// StepCommand it becomes the step.
func StepMain() {
	if os.Getenv(stepEnv) == "" {
		return
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, stepEnv+"=") {
			env = append(env, kv)
		}
	}
	unix.Umask(0o022)
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "imgbuild-step: no command")
		os.Exit(126)
	}
	err := unix.Exec(os.Args[1], os.Args[2:], env)
	fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[2], err)
	if errors.Is(err, unix.ENOENT) {
		os.Exit(127)
	}
	os.Exit(126)
}
