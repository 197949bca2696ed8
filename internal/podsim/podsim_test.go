package podsim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"

	"github.com/imgbuild/imgbuild/internal/k8stest"
)

// releaseImageConfig stands for the release image's config in the tests
// that need no built image.
var releaseImageConfig = Image{
	Entrypoint: []string{"/kaniko/imgbuild"},
	Env: []string{"PATH=/kaniko", "SSL_CERT_FILE=/kaniko/ssl/certs/ca-certificates.crt",
		"DOCKER_CONFIG=/kaniko/.docker/", "IMGBUILD_ROOT=/var/lib/imgbuild"},
	WorkingDir: "/workspace",
}

// noRegistryAuth is the docker config the registry Secret holds.
var noRegistryAuth = WithSecret("registry-credentials", map[string]string{".dockerconfigjson": `{"auths":{}}`})

// derivePod simulates manifest's pod in a directory removed when the test
// ends.
func derivePod(t *testing.T, manifest string, img Image, opts ...Option) *Pod {
	t.Helper()
	p, err := Derive(manifest, t.TempDir(), img, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// containerdCaps is the capability set containerd gives a container that
// asks for none (pkg/oci defaultUnixCaps): no CAP_SYS_ADMIN.
var containerdCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// TestPodSimConfigs checks the runc config of each of the four
// pods against what its manifest says.
func TestPodSimConfigs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		manifest      string
		opts          []Option
		uid, gid      uint32
		gids          []uint32 // the primary gid, supplementalGroups, fsGroup
		seccomp       bool
		userns        bool
		masked        bool
		noNewPrivs    bool
		argv          []string
		env           []string // entries that must be there
		roMounts      []string // volume and kubelet mounts that must be read-only
		rwMounts      []string
		mountsMissing []string
	}{
		{
			name: "a default pod", manifest: "job-default-pod.yaml",
			gids: []uint32{0}, seccomp: true, masked: true,
			argv:     []string{"/kaniko/executor", "--context=dir:///workspace", "--dockerfile=Dockerfile", "--destination=registry.example.com/app:latest"},
			env:      []string{"IMGBUILD_ROOT=/var/lib/imgbuild", "DOCKER_CONFIG=/kaniko/.docker/", "HOSTNAME=imgbuild-default-pod"},
			roMounts: []string{"/kaniko/.docker", "/var/run/secrets/kubernetes.io/serviceaccount"},
			rwMounts: []string{"/var/lib/imgbuild", "/workspace", "/etc/hosts", "/etc/resolv.conf", "/dev/termination-log"},
		},
		{
			name: "b default pod, seccomp Unconfined", manifest: "job-default-pod.yaml", opts: []Option{SeccompUnconfined()},
			gids: []uint32{0}, masked: true,
			argv:     []string{"/kaniko/executor", "--context=dir:///workspace", "--dockerfile=Dockerfile", "--destination=registry.example.com/app:latest"},
			roMounts: []string{"/kaniko/.docker"},
			rwMounts: []string{"/var/lib/imgbuild", "/workspace"},
		},
		{
			name: "c rootless without a user namespace", manifest: "job-rootless.yaml", opts: []Option{WithoutUserNamespace()},
			uid: 1000, gid: 1000, gids: []uint32{1000}, masked: true,
			argv: []string{"/kaniko/imgbuild", "build", "--progress=plain", "--root=/home/build/state",
				"--tag=registry.example.com/app:latest", "--push", "/workspace"},
			env:           []string{"HOME=/home/build"},
			rwMounts:      []string{"/home/build", "/tmp", "/workspace"},
			mountsMissing: []string{"/kaniko/.docker"},
		},
		{
			name: "d userns", manifest: "job-userns.yaml",
			gids: []uint32{0}, userns: true, noNewPrivs: true,
			argv:     []string{"/kaniko/imgbuild", "build", "--progress=plain", "--tag=registry.example.com/app:latest", "--push", "/workspace"},
			roMounts: []string{"/kaniko/.docker"},
			rwMounts: []string{"/var/lib/imgbuild", "/tmp", "/workspace"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := derivePod(t, tc.manifest, releaseImageConfig, append([]Option{noRegistryAuth}, tc.opts...)...)
			s := p.Spec
			if s.Process.User.UID != tc.uid || s.Process.User.GID != tc.gid {
				t.Errorf("user %d:%d, want %d:%d", s.Process.User.UID, s.Process.User.GID, tc.uid, tc.gid)
			}
			if diff := cmp.Diff(tc.gids, s.Process.User.AdditionalGids); diff != "" {
				t.Errorf("additional gids (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.argv, s.Process.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			for _, e := range tc.env {
				if !slices.Contains(s.Process.Env, e) {
					t.Errorf("env lacks %s: %v", e, s.Process.Env)
				}
			}
			// No capabilities beyond containerd's, none inherited or
			// ambient: a non-root process (pod c) ends with none at exec.
			c := s.Process.Capabilities
			for _, set := range [][]string{c.Bounding, c.Permitted, c.Effective} {
				if diff := cmp.Diff(containerdCaps, set); diff != "" {
					t.Errorf("capabilities (-want +got):\n%s", diff)
				}
			}
			if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
				t.Errorf("inheritable %v, ambient %v: want none", c.Inheritable, c.Ambient)
			}
			if got := s.Linux.Seccomp != nil; got != tc.seccomp {
				t.Errorf("seccomp profile set: %v, want %v", got, tc.seccomp)
			}
			if s.Linux.Seccomp != nil {
				if s.Linux.Seccomp.DefaultAction != specs.ActErrno {
					t.Errorf("seccomp default action %s, want %s", s.Linux.Seccomp.DefaultAction, specs.ActErrno)
				}
				// Docker's profile allows these only with CAP_SYS_ADMIN,
				// which the pod lacks.
				for _, sys := range []string{"mount", "unshare", "setns"} {
					if seccompAllows(s.Linux.Seccomp, sys) {
						t.Errorf("seccomp allows %s", sys)
					}
				}
				if !seccompAllows(s.Linux.Seccomp, "read") {
					t.Error("seccomp refuses read: not Docker's default profile")
				}
			}
			hasUserns := slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
			if hasUserns != tc.userns {
				t.Errorf("user namespace %v, want %v", hasUserns, tc.userns)
			}
			if tc.userns {
				want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: IDBase, Size: 65536}}
				if diff := cmp.Diff(want, s.Linux.UIDMappings); diff != "" {
					t.Errorf("uid mappings (-want +got):\n%s", diff)
				}
				if p.HostRoot != IDBase {
					t.Errorf("host root %d, want %d", p.HostRoot, IDBase)
				}
			}
			if slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace }) {
				t.Error("a network namespace: the simulated pods share the host's")
			}
			for _, path := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"} {
				if got := slices.Contains(s.Linux.MaskedPaths, path); got != tc.masked {
					t.Errorf("%s masked: %v, want %v", path, got, tc.masked)
				}
			}
			for _, path := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus"} {
				if got := slices.Contains(s.Linux.ReadonlyPaths, path); got != tc.masked {
					t.Errorf("%s read-only: %v, want %v", path, got, tc.masked)
				}
			}
			if s.Process.NoNewPrivileges != tc.noNewPrivs {
				t.Errorf("noNewPrivileges %v, want %v", s.Process.NoNewPrivileges, tc.noNewPrivs)
			}
			for _, dst := range append([]string{"/sys", "/sys/fs/cgroup"}, tc.roMounts...) {
				m, ok := p.Mount(dst)
				if !ok || !slices.Contains(m.Options, "ro") {
					t.Errorf("%s: want a read-only mount, got %+v", dst, m)
				}
			}
			for _, dst := range append([]string{"/proc", "/dev"}, tc.rwMounts...) {
				m, ok := p.Mount(dst)
				if !ok || slices.Contains(m.Options, "ro") {
					t.Errorf("%s: want a read-write mount, got %+v", dst, m)
				}
			}
			for _, dst := range tc.mountsMissing {
				if m, ok := p.Mount(dst); ok {
					t.Errorf("%s: mounted (%+v), the manifest has no such volume", dst, m)
				}
			}
			if !strings.Contains(s.Linux.CgroupsPath, "/kubepods/") {
				t.Errorf("cgroups path %q is not a pod's", s.Linux.CgroupsPath)
			}
		})
	}
}

func seccompAllows(sc *specs.LinuxSeccomp, name string) bool {
	for _, s := range sc.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

// TestPodSimVolumes: the volumes are host directories shaped as the
// kubelet makes them, and the Secret's items are files in its volume.
func TestPodSimVolumes(t *testing.T) {
	t.Parallel()
	p := derivePod(t, "job-default-pod.yaml", releaseImageConfig,
		WithSecret("registry-credentials", map[string]string{".dockerconfigjson": `{"auths":{"r":{}}}`}))
	b, err := os.ReadFile(filepath.Join(p.Volumes["docker-config"], "config.json"))
	if err != nil || string(b) != `{"auths":{"r":{}}}` {
		t.Errorf("docker-config/config.json = %q, %v", b, err)
	}
	m, _ := p.Mount("/workspace")
	if m.Source != p.Volumes["workspace"] {
		t.Errorf("/workspace is bound from %s, want %s", m.Source, p.Volumes["workspace"])
	}
	fi, err := os.Stat(p.Volumes["state"])
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("the state emptyDir: %v, %v; want mode 0777", fi, err)
	}
}

// TestPodSimRefuses: a setting the simulator cannot honour fails the
// derivation instead of being dropped.
func TestPodSimRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*corev1.PodSpec)
		want   string
	}{
		{"Localhost seccomp", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost}
		}, "seccomp profile Localhost"},
		{"hostPath volume", func(s *corev1.PodSpec) {
			s.Volumes[0].EmptyDir = nil
			s.Volumes[0].HostPath = &corev1.HostPathVolumeSource{Path: "/"}
		}, "only emptyDir and secret"},
		{"Unmasked /proc without a user namespace", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.ProcMount = new(corev1.UnmaskedProcMount)
		}, "needs hostUsers: false"},
		{"env from a Secret", func(s *corev1.PodSpec) {
			s.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{}}}
		}, "valueFrom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job, err := k8stest.LoadNamed("job-default-pod.yaml")
			if err != nil {
				t.Fatal(err)
			}
			tc.change(&job.Spec.Template.Spec)
			_, err = FromJob("job-default-pod.yaml", job, t.TempDir(), releaseImageConfig, noRegistryAuth)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "job-default-pod.yaml") {
				t.Errorf("error %v, want one naming the manifest and %q", err, tc.want)
			}
		})
	}
}
