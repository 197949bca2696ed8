package cmd

// The pod simulator: a runc config for a Job in hack/k8s, set up as the
// kubelet and containerd would run its pod, so that the pods the e2e tests
// build in are the manifests we ship. What it leaves out, and why:
//   - the pod's network namespace: the pod shares the host's, to reach the
//     test registry on loopback as a pod reaches a registry Service, so /sys
//     is the host's, bound read-only (sysfs needs a network namespace);
//   - AppArmor: this host has none, so RuntimeDefault's mount denial is
//     left to the seccomp profile, which refuses mount too;
//   - idmapped volume mounts: with hostUsers: false the volumes are chowned
//     to the pod's root instead, which reads the same inside the pod.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/imgbuild/imgbuild/internal/k8stest"
)

// podIDBase is where a hostUsers: false pod's user namespace starts on the
// host, as a kubelet with user namespaces maps it.
const podIDBase = 200000

// exampleRegistry is the registry the manifests push to;
// withRegistry points it at the test's.
const exampleRegistry = "registry.example.com"

// simImage is what the pod's image config contributes to its process.
type simImage struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
}

func simImageOf(cfg v1.Config) simImage {
	return simImage{Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User}
}

// releaseImageConfig is the repo's Dockerfile's config, for the unit tests
// that need no built image.
var releaseImageConfig = simImage{
	Entrypoint: []string{"/usr/local/bin/imgbuild"},
	Env: []string{"PATH=/usr/local/bin:/kaniko", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		"DOCKER_CONFIG=/kaniko/.docker/", "IMGBUILD_ROOT=/var/lib/imgbuild"},
	WorkingDir: "/workspace",
}

type podOptions struct {
	seccompUnconfined bool
	noUserNamespace   bool
	command           []string
	registry          string
	extraArgs         []string
	env               []string
	secrets           map[string]map[string]string
}

type podOption func(*podOptions)

// seccompUnconfined runs the pod without a seccomp profile: the manifest
// on a kubelet without SeccompDefault, had it no seccompProfile.
func seccompUnconfined() podOption { return func(o *podOptions) { o.seccompUnconfined = true } }

// withoutUserNamespace drops hostUsers and procMount from the manifest, as
// its comments tell a cluster without user namespaces to.
func withoutUserNamespace() podOption { return func(o *podOptions) { o.noUserNamespace = true } }

// withCommand replaces the container's command and args.
func withCommand(argv ...string) podOption { return func(o *podOptions) { o.command = argv } }

// withRegistry replaces the manifest's registry.example.com in the
// container's arguments with prefix (host:port/path).
func withRegistry(prefix string) podOption { return func(o *podOptions) { o.registry = prefix } }

// withArgs appends arguments to the container's.
func withArgs(args ...string) podOption {
	return func(o *podOptions) { o.extraArgs = append(o.extraArgs, args...) }
}

// withEnv adds KEY=VALUE entries to the container's environment.
func withEnv(kv ...string) podOption { return func(o *podOptions) { o.env = append(o.env, kv...) } }

// withSecret gives the Secret named name the data a secret volume shows.
func withSecret(name string, data map[string]string) podOption {
	return func(o *podOptions) {
		if o.secrets == nil {
			o.secrets = map[string]map[string]string{}
		}
		o.secrets[name] = data
	}
}

// simPod is one simulated pod: its runc config and, under dir, its bundle
// and the host directories behind its volumes.
type simPod struct {
	manifest string
	spec     *specs.Spec
	dir      string
	hostRoot int               // host uid and gid of the pod's uid 0
	volumes  map[string]string // volume name → host directory
}

// derivePod simulates the pod of hack/k8s/manifest, in a bundle directory
// removed when the test ends.
func derivePod(t *testing.T, manifest string, img simImage, opts ...podOption) *simPod {
	t.Helper()
	job, err := k8stest.LoadNamed(manifest)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parent is private to the host's root, and a
	// user-namespaced pod's root must reach its rootfs.
	dir, err := os.MkdirTemp("", "imgbuild-pod-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := podFromJob(manifest, job, dir, img, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// podFromJob derives the pod's runc config from the Job as containerd's CRI
// plugin builds it (internal/cri/server/container_create.go in
// containerd v2): containerd's default spec, then the container's security
// context. Settings the simulator cannot honour are errors, not ignored.
func podFromJob(manifest string, job *batchv1.Job, dir string, img simImage, opts ...podOption) (*simPod, error) {
	var o podOptions
	for _, opt := range opts {
		opt(&o)
	}
	fail := func(format string, args ...any) (*simPod, error) {
		return nil, fmt.Errorf("%s: "+format, append([]any{manifest}, args...)...)
	}
	ps := job.Spec.Template.Spec.DeepCopy()
	if len(ps.Containers) != 1 || len(ps.InitContainers) != 0 {
		return fail("the simulator runs one container and no init containers, the pod has %d and %d", len(ps.Containers), len(ps.InitContainers))
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		return fail("host namespaces are not simulated")
	}
	c := &ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	psc := ps.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if o.noUserNamespace {
		ps.HostUsers = nil
		sc.ProcMount = nil
	}
	userns := ps.HostUsers != nil && !*ps.HostUsers
	unmasked := sc.ProcMount != nil && *sc.ProcMount == corev1.UnmaskedProcMount
	if unmasked && !userns {
		// The API server refuses this pod.
		return fail("procMount: Unmasked needs hostUsers: false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		return fail("privileged containers are not simulated")
	}

	// The process: Kubernetes' command and args over the image's
	// entrypoint and cmd.
	argv := slices.Clone(c.Command)
	switch {
	case len(c.Command) > 0:
		argv = append(argv, c.Args...)
	case len(c.Args) > 0:
		argv = append(slices.Clone(img.Entrypoint), c.Args...)
	default:
		argv = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if o.command != nil {
		argv = slices.Clone(o.command)
	}
	if o.registry != "" {
		for i, a := range argv {
			argv[i] = strings.ReplaceAll(a, exampleRegistry, o.registry)
		}
	}
	argv = append(argv, o.extraArgs...)
	if len(argv) == 0 {
		return fail("the container has no command")
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	env := slices.Clone(img.Env)
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return fail("env %s: valueFrom is not simulated", e.Name)
		}
		env = append(env, e.Name+"="+e.Value)
	}
	// What the kubelet adds to every container.
	env = append(env, "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_SERVICE_PORT_HTTPS=443", "KUBERNETES_PORT=tcp://10.96.0.1:443")
	env = append(env, o.env...)

	uid, gid, err := podUser(sc, psc, img.User)
	if err != nil {
		return fail("%v", err)
	}

	id := "imgbuild-pod-" + filepath.Base(dir)
	specOpts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutDefaultSecurity,
		oci.WithProcessArgs(argv...),
		oci.WithDefaultPathEnv,
		oci.WithNewPrivileges,
		oci.WithProcessCwd(cwd),
		oci.WithEnv([]string{"HOSTNAME=" + job.Name}),
		oci.WithEnv(env),
		oci.WithUIDGID(uid, gid),
		// The host's network; see the top of this file.
		oci.WithHostNamespace(specs.NetworkNamespace),
		// A pod's cgroup, as a kubelet with the cgroupfs driver names it.
		oci.WithCgroup("/kubepods/besteffort/pod" + filepath.Base(dir) + "/" + id),
	}
	if unmasked {
		specOpts = append(specOpts, oci.WithMaskedPaths([]string{}), oci.WithReadonlyPaths([]string{}))
	}
	capOpts, err := podCapabilities(sc.Capabilities)
	if err != nil {
		return fail("%v", err)
	}
	specOpts = append(specOpts, capOpts...)
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		specOpts = append(specOpts, oci.WithNoNewPrivileges)
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		specOpts = append(specOpts, oci.WithRootFSReadonly())
	}
	hostRoot := 0
	if userns {
		hostRoot = podIDBase
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: podIDBase, Size: 65536}}
		specOpts = append(specOpts, oci.WithUserNamespace(m, m))
	}
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	spec, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, specOpts...)
	if err != nil {
		return fail("generating the runc config: %v", err)
	}
	spec.Process.Terminal = false
	for _, g := range psc.SupplementalGroups {
		spec.Process.User.AdditionalGids = append(spec.Process.User.AdditionalGids, uint32(g))
	}
	if psc.FSGroup != nil {
		spec.Process.User.AdditionalGids = append(spec.Process.User.AdditionalGids, uint32(*psc.FSGroup))
	}
	// Once each, sorted, as CRI lists them.
	slices.Sort(spec.Process.User.AdditionalGids)
	spec.Process.User.AdditionalGids = slices.Compact(spec.Process.User.AdditionalGids)

	p := &simPod{manifest: manifest, spec: spec, dir: dir, hostRoot: hostRoot, volumes: map[string]string{}}
	if err := p.setMounts(ps, c, psc, o.secrets); err != nil {
		return fail("%v", err)
	}

	// Seccomp last: Docker's default profile allows some syscalls only to
	// a process holding the capabilities they need, read from the spec.
	profile := corev1.SeccompProfileTypeUnconfined // a kubelet without SeccompDefault
	if psc.SeccompProfile != nil {
		profile = psc.SeccompProfile.Type
	}
	if sc.SeccompProfile != nil {
		profile = sc.SeccompProfile.Type
	}
	if o.seccompUnconfined {
		profile = corev1.SeccompProfileTypeUnconfined
	}
	switch profile {
	case corev1.SeccompProfileTypeRuntimeDefault:
		if spec.Linux.Seccomp, err = seccomp.GetDefaultProfile(spec); err != nil {
			return fail("Docker's default seccomp profile: %v", err)
		}
	case corev1.SeccompProfileTypeUnconfined:
	default:
		return fail("seccomp profile %s is not simulated", profile)
	}
	return p, nil
}

// withoutDefaultSecurity is CRI's WithoutDefaultSecuritySettings: the pod's
// security context alone decides seccomp, AppArmor and rlimits.
func withoutDefaultSecurity(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	s.Process.ApparmorProfile = ""
	s.Process.Rlimits = nil
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}

// podUser is the process's uid and gid: the container's security context,
// then the pod's, then the image's USER.
func podUser(sc *corev1.SecurityContext, psc *corev1.PodSecurityContext, imageUser string) (uint32, uint32, error) {
	var uid, gid int64
	if imageUser != "" {
		u, g, _ := strings.Cut(imageUser, ":")
		var err error
		if uid, err = strconv.ParseInt(u, 10, 32); err != nil {
			return 0, 0, fmt.Errorf("image USER %q: only numeric IDs are simulated", imageUser)
		}
		if g != "" {
			if gid, err = strconv.ParseInt(g, 10, 32); err != nil {
				return 0, 0, fmt.Errorf("image USER %q: only numeric IDs are simulated", imageUser)
			}
		}
	}
	for _, v := range []*int64{psc.RunAsUser, sc.RunAsUser} {
		if v != nil {
			uid = *v
		}
	}
	for _, v := range []*int64{psc.RunAsGroup, sc.RunAsGroup} {
		if v != nil {
			gid = *v
		}
	}
	return uint32(uid), uint32(gid), nil
}

// podCapabilities is CRI's WithCapabilities: containerd's default set, then
// drop ALL, the adds, the drops.
func podCapabilities(caps *corev1.Capabilities) ([]oci.SpecOpts, error) {
	if caps == nil {
		return nil, nil
	}
	var opts []oci.SpecOpts
	var add, drop []string
	for _, c := range caps.Add {
		if strings.EqualFold(string(c), "ALL") {
			return nil, fmt.Errorf("capabilities.add: ALL is not simulated")
		}
		add = append(add, "CAP_"+strings.ToUpper(string(c)))
	}
	for _, c := range caps.Drop {
		if strings.EqualFold(string(c), "ALL") {
			opts = append(opts, oci.WithCapabilities(nil))
			continue
		}
		drop = append(drop, "CAP_"+strings.ToUpper(string(c)))
	}
	return append(opts, oci.WithAddedCapabilities(add), oci.WithDroppedCapabilities(drop)), nil
}

// setMounts gives the pod what containerd and the kubelet mount into a
// container besides containerd's defaults: /sys read-only (see the top of
// the file), /sys/fs/cgroup read-only, the files the kubelet manages, the
// service account token and the manifest's volumes.
func (p *simPod) setMounts(ps *corev1.PodSpec, c *corev1.Container, psc *corev1.PodSecurityContext, secrets map[string]map[string]string) error {
	var mounts []specs.Mount
	for _, m := range p.spec.Mounts {
		if m.Destination == "/sys" {
			mounts = append(mounts,
				specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}},
				specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
			continue
		}
		mounts = append(mounts, m)
	}
	bind := func(dst, src string, ro bool) {
		mode := "rw"
		if ro {
			mode = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", mode}})
	}
	kubelet := filepath.Join(p.dir, "kubelet")
	for name, body := range map[string]string{
		"hosts":           "127.0.0.1 localhost\n::1 localhost\n",
		"hostname":        "imgbuild-pod\n",
		"resolv.conf":     "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
		"termination-log": "",
		"token/token":     "simulated-service-account-token\n",
		"token/namespace": "default\n",
		"token/ca.crt":    "",
	} {
		if err := p.writeFile(filepath.Join(kubelet, name), body, 0o644); err != nil {
			return err
		}
	}
	bind("/etc/hosts", filepath.Join(kubelet, "hosts"), false)
	bind("/etc/hostname", filepath.Join(kubelet, "hostname"), false)
	bind("/etc/resolv.conf", filepath.Join(kubelet, "resolv.conf"), false)
	tlog := c.TerminationMessagePath
	if tlog == "" {
		tlog = "/dev/termination-log"
	}
	bind(tlog, filepath.Join(kubelet, "termination-log"), false)
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		bind("/var/run/secrets/kubernetes.io/serviceaccount", filepath.Join(kubelet, "token"), true)
	}

	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return fmt.Errorf("volumeMount %s: no such volume", vm.Name)
		}
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			return fmt.Errorf("volumeMount %s: subPath is not simulated", vm.Name)
		}
		host := filepath.Join(p.dir, "volumes", vm.Name)
		ro := vm.ReadOnly
		switch {
		case v.EmptyDir != nil:
			// The kubelet makes an emptyDir world-writable; with an
			// fsGroup, it is that group's and setgid.
			if err := os.MkdirAll(host, 0o755); err != nil {
				return err
			}
			mode, group := os.FileMode(0o777), p.hostRoot
			if psc.FSGroup != nil {
				mode, group = mode|os.ModeSetgid, p.hostRoot+int(*psc.FSGroup)
			}
			if err := chown(host, p.hostRoot, group); err != nil {
				return err
			}
			if err := os.Chmod(host, mode); err != nil {
				return err
			}
		case v.Secret != nil:
			data, ok := secrets[v.Secret.SecretName]
			if !ok {
				return fmt.Errorf("volume %s: no data for Secret %s (withSecret)", vm.Name, v.Secret.SecretName)
			}
			files := map[string]string{}
			if len(v.Secret.Items) == 0 {
				for k, d := range data {
					files[k] = d
				}
			}
			for _, it := range v.Secret.Items {
				d, ok := data[it.Key]
				if !ok {
					return fmt.Errorf("volume %s: Secret %s has no key %s", vm.Name, v.Secret.SecretName, it.Key)
				}
				files[it.Path] = d
			}
			for name, d := range files {
				if err := p.writeFile(filepath.Join(host, name), d, 0o644); err != nil {
					return err
				}
			}
			// Secret volumes are always read-only.
			ro = true
		default:
			return fmt.Errorf("volume %s: only emptyDir and secret volumes are simulated", vm.Name)
		}
		p.volumes[vm.Name] = host
		bind(vm.MountPath, host, ro)
	}
	p.spec.Mounts = mounts
	return nil
}

// writeFile writes a file (and its directories) owned by the pod's root.
func (p *simPod) writeFile(path, body string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		return err
	}
	for d := path; d != p.dir; d = filepath.Dir(d) {
		if err := chown(d, p.hostRoot, p.hostRoot); err != nil {
			return err
		}
	}
	return nil
}

// chown gives path to uid and gid when the test runs as root, as the pods
// do; a non-root run derives configs only, its files stay the user's.
func chown(path string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(path, uid, gid)
}

// mount returns the pod's mount at dst.
func (p *simPod) mount(dst string) (specs.Mount, bool) {
	for _, m := range p.spec.Mounts {
		if m.Destination == dst {
			return m, true
		}
	}
	return specs.Mount{}, false
}

// run unpacks img as the pod's root filesystem and runs the pod to its end
// with runc, returning what it printed.
func (p *simPod) run(t *testing.T, runc string, img v1.Image) (string, error) {
	t.Helper()
	rootfs := filepath.Join(p.dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	untarReader(t, mutate.Extract(img), rootfs)
	if p.hostRoot != 0 {
		if err := shiftIDs(rootfs, p.hostRoot); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.MarshalIndent(p.spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.removeCgroups)
	var out strings.Builder
	cmd := exec.CommandContext(t.Context(), runc, "--root", filepath.Join(p.dir, "runc-state"), "run", "--bundle", p.dir, filepath.Base(p.spec.Linux.CgroupsPath))
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("pod %s output:\n%s", p.manifest, out.String())
	return out.String(), err
}

// shiftIDs moves every file's owner under dir into the pod's ID range, as
// the image's files read in a hostUsers: false pod.
func shiftIDs(dir string, base int) error {
	return filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner", path)
		}
		if err := os.Lchown(path, base+int(st.Uid), base+int(st.Gid)); err != nil {
			return err
		}
		// chown clears setuid and setgid; the image keeps them.
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 && fi.Mode()&os.ModeSymlink == 0 {
			return os.Chmod(path, fi.Mode())
		}
		return nil
	})
}

// removeCgroups removes the pod's cgroup directories that runc leaves: the
// parents of the container's.
func (p *simPod) removeCgroups() {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	for _, h := range hierarchies {
		for d := filepath.Dir(p.spec.Linux.CgroupsPath); d != "/" && d != "."; d = filepath.Dir(d) {
			os.Remove(filepath.Join(h, d))
		}
	}
}
