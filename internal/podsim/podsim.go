// Package podsim simulates the pod of a Job in hack/k8s: a runc bundle whose
// config is set up as the kubelet and containerd would run the Job's pod, so
// that the pods the e2e tests and the benchmark build in are the manifests we
// ship. What it leaves out, and why:
//   - the pod's network namespace: the pod shares the host's, to reach the
//     test registry on loopback as a pod reaches a registry Service, so /sys
//     is the host's, bound read-only (sysfs needs a network namespace);
//   - AppArmor: this host has none, so RuntimeDefault's mount denial is
//     left to the seccomp profile, which refuses mount too;
//   - idmapped volume mounts: with hostUsers: false the volumes are chowned
//     to the pod's root instead, which reads the same inside the pod.
//
// It imports k8s.io modules, so only tests and hack/ tools import it (see
// internal/archtest).
package podsim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

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

// IDBase is where a hostUsers: false pod's user namespace starts on the
// host, as a kubelet with user namespaces maps it.
const IDBase = 200000

// ExampleRegistry is the registry the manifests push to; [WithRegistry]
// points it at another.
const ExampleRegistry = "registry.example.com"

// Image is what the pod's image config contributes to its process.
type Image struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
}

// ImageOf returns what cfg contributes to the pod's process.
func ImageOf(cfg v1.Config) Image {
	return Image{Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User}
}

type options struct {
	seccompUnconfined bool
	noUserNamespace   bool
	command           []string
	registry          string
	extraArgs         []string
	env               []string
	secrets           map[string]map[string]string
}

// Option changes how the pod is derived from its manifest.
type Option func(*options)

// SeccompUnconfined runs the pod without a seccomp profile: the manifest
// on a kubelet without SeccompDefault, had it no seccompProfile.
func SeccompUnconfined() Option { return func(o *options) { o.seccompUnconfined = true } }

// WithoutUserNamespace drops hostUsers and procMount from the manifest, as
// its comments tell a cluster without user namespaces to.
func WithoutUserNamespace() Option { return func(o *options) { o.noUserNamespace = true } }

// WithCommand replaces the container's command and args.
func WithCommand(argv ...string) Option { return func(o *options) { o.command = argv } }

// WithRegistry replaces the manifest's registry.example.com in the
// container's arguments with prefix (host:port/path).
func WithRegistry(prefix string) Option { return func(o *options) { o.registry = prefix } }

// WithArgs appends arguments to the container's.
func WithArgs(args ...string) Option {
	return func(o *options) { o.extraArgs = append(o.extraArgs, args...) }
}

// WithEnv adds KEY=VALUE entries to the container's environment.
func WithEnv(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

// WithSecret gives the Secret named name the data a secret volume shows.
// A manifest's secret volume without its Secret's data is an error.
func WithSecret(name string, data map[string]string) Option {
	return func(o *options) {
		if o.secrets == nil {
			o.secrets = map[string]map[string]string{}
		}
		o.secrets[name] = data
	}
}

// Pod is one simulated pod: its runc config and, under Dir, its bundle
// (config.json, rootfs) and the host directories behind its volumes.
type Pod struct {
	Manifest string
	Spec     *specs.Spec
	Dir      string
	HostRoot int               // host uid and gid of the pod's uid 0
	Volumes  map[string]string // volume name → host directory
}

// Derive simulates the pod of hack/k8s/manifest in dir, which must exist
// and be reachable by the pod's root (a user-namespaced pod's root is not
// the host's).
func Derive(manifest, dir string, img Image, opts ...Option) (*Pod, error) {
	job, err := k8stest.LoadNamed(manifest)
	if err != nil {
		return nil, err
	}
	return FromJob(manifest, job, dir, img, opts...)
}

// DeriveFile is [Derive] for the manifest at path, for a binary built with
// -trimpath, which cannot find hack/k8s from its own source.
func DeriveFile(path, dir string, img Image, opts ...Option) (*Pod, error) {
	job, err := k8stest.Load(path)
	if err != nil {
		return nil, err
	}
	return FromJob(filepath.Base(path), job, dir, img, opts...)
}

// FromJob derives the pod's runc config from the Job as containerd's CRI
// plugin builds it (internal/cri/server/container_create.go in
// containerd v2): containerd's default spec, then the container's security
// context. Settings the simulator cannot honour are errors, not ignored.
func FromJob(manifest string, job *batchv1.Job, dir string, img Image, opts ...Option) (*Pod, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fail := func(format string, args ...any) (*Pod, error) {
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
			argv[i] = strings.ReplaceAll(a, ExampleRegistry, o.registry)
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
		hostRoot = IDBase
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: IDBase, Size: 65536}}
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

	p := &Pod{Manifest: manifest, Spec: spec, Dir: dir, HostRoot: hostRoot, Volumes: map[string]string{}}
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
func (p *Pod) setMounts(ps *corev1.PodSpec, c *corev1.Container, psc *corev1.PodSecurityContext, secrets map[string]map[string]string) error {
	var mounts []specs.Mount
	for _, m := range p.Spec.Mounts {
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
	kubelet := filepath.Join(p.Dir, "kubelet")
	for name, body := range map[string]string{
		"hosts":           "127.0.0.1 localhost\n::1 localhost\n",
		"hostname":        "imgbuild-pod\n",
		"resolv.conf":     "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
		"termination-log": "",
		"token/token":     "simulated-service-account-token\n",
		"token/namespace": "default\n",
		"token/ca.crt":    "",
	} {
		if err := p.WriteFile(filepath.Join(kubelet, name), body, 0o644); err != nil {
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
		host := filepath.Join(p.Dir, "volumes", vm.Name)
		ro := vm.ReadOnly
		switch {
		case v.EmptyDir != nil:
			// The kubelet makes an emptyDir world-writable; with an
			// fsGroup, it is that group's and setgid.
			if err := os.MkdirAll(host, 0o755); err != nil {
				return err
			}
			mode, group := os.FileMode(0o777), p.HostRoot
			if psc.FSGroup != nil {
				mode, group = mode|os.ModeSetgid, p.HostRoot+int(*psc.FSGroup)
			}
			if err := chown(host, p.HostRoot, group); err != nil {
				return err
			}
			if err := os.Chmod(host, mode); err != nil {
				return err
			}
		case v.Secret != nil:
			data, ok := secrets[v.Secret.SecretName]
			if !ok {
				return fmt.Errorf("volume %s: no data for Secret %s (WithSecret)", vm.Name, v.Secret.SecretName)
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
				if err := p.WriteFile(filepath.Join(host, name), d, 0o644); err != nil {
					return err
				}
			}
			// Secret volumes are always read-only.
			ro = true
		default:
			return fmt.Errorf("volume %s: only emptyDir and secret volumes are simulated", vm.Name)
		}
		p.Volumes[vm.Name] = host
		bind(vm.MountPath, host, ro)
	}
	p.Spec.Mounts = mounts
	return nil
}

// WriteFile writes a file (and its directories) owned by the pod's root.
func (p *Pod) WriteFile(path, body string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		return err
	}
	for d := path; d != p.Dir; d = filepath.Dir(d) {
		if err := chown(d, p.HostRoot, p.HostRoot); err != nil {
			return err
		}
	}
	return nil
}

// CopyDir copies the regular files of src into dst, owned by the pod's
// root: what an initContainer's git clone leaves in the workspace.
func (p *Pod) CopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		return p.WriteFile(filepath.Join(dst, rel), string(b), 0o644)
	})
}

// chown gives path to uid and gid when running as root, as the pods do; a
// non-root run derives configs only, its files stay the user's.
func chown(path string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(path, uid, gid)
}

// Mount returns the pod's mount at dst.
func (p *Pod) Mount(dst string) (specs.Mount, bool) {
	for _, m := range p.Spec.Mounts {
		if m.Destination == dst {
			return m, true
		}
	}
	return specs.Mount{}, false
}

// RootFS is the host directory of the pod's root filesystem.
func (p *Pod) RootFS() string { return filepath.Join(p.Dir, "rootfs") }

// Unpack extracts img's flattened filesystem as the pod's root filesystem.
func (p *Pod) Unpack(img v1.Image) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	return p.fillRootFS(func(rootfs string) *exec.Cmd {
		cmd := exec.Command("tar", "-x", "-C", rootfs)
		cmd.Stdin = rc
		return cmd
	})
}

// CopyRootFS copies the tree at dir, owners and modes kept, as the pod's
// root filesystem.
func (p *Pod) CopyRootFS(dir string) error {
	return p.fillRootFS(func(rootfs string) *exec.Cmd {
		// Not filepath.Join, which drops the "/.".
		return exec.Command("cp", "-a", dir+"/.", rootfs)
	})
}

func (p *Pod) fillRootFS(fill func(rootfs string) *exec.Cmd) error {
	rootfs := p.RootFS()
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	cmd := fill(rootfs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("filling %s with %s: %w: %s", rootfs, cmd.Args[0], err, out)
	}
	if p.HostRoot != 0 {
		return shiftIDs(rootfs, p.HostRoot)
	}
	return nil
}

// WriteConfig writes the bundle's config.json.
func (p *Pod) WriteConfig() error {
	b, err := json.MarshalIndent(p.Spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.Dir, "config.json"), b, 0o644)
}

// Run writes the bundle's config.json and runs the pod to its end with
// runc (see [RunBundle]). Its root filesystem must be filled first.
func (p *Pod) Run(ctx context.Context, runc string, stdout, stderr io.Writer) error {
	if err := p.WriteConfig(); err != nil {
		return err
	}
	return RunBundle(ctx, runc, p.Dir, stdout, stderr)
}

// RunBundle runs the pod whose bundle is dir to its end with runc, its
// state under dir, and removes the pod's cgroups that runc leaves.
func RunBundle(ctx context.Context, runc, dir string, stdout, stderr io.Writer) error {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("decoding %s/config.json: %w", dir, err)
	}
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return fmt.Errorf("%s/config.json: no cgroups path, not a simulated pod's", dir)
	}
	defer removeCgroups(spec.Linux.CgroupsPath)
	cmd := exec.CommandContext(ctx, runc, "--root", filepath.Join(dir, "runc-state"), "run", "--bundle", dir, filepath.Base(spec.Linux.CgroupsPath))
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd.Run()
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
func removeCgroups(path string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	for _, h := range hierarchies {
		for d := filepath.Dir(path); d != "/" && d != "."; d = filepath.Dir(d) {
			os.Remove(filepath.Join(h, d))
		}
	}
}
