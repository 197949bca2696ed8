package cmd

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgbuild/imgbuild/internal/testutil"
)

// The hostile-input catalogue (docs/security.md): base images, contexts and
// Dockerfiles built to break out of the state dir. Every case checks the
// exit code, that the error names what is at fault, that nothing outside
// the state dir and the outputs changed (a host sentinel), and that a
// failed build pushed no tag.

// hostile is what the hostile tests share: the sentinel the images aim at
// and the references of the images pushed to the shared registry.
type hostile struct {
	s      *testutil.Sentinel
	images map[string]string // case -> reference
	layers map[string]v1.Hash
	poison v1.Layer // the layer of hostile/poison
}

var (
	hostileOnce sync.Once
	hostileEnv  hostile
	hostileErr  error
)

// up is the number of "../" that leaves any snapshot directory.
var up = strings.Repeat("../", 24)

// hostileImages pushes the hostile base images once per test binary.
func hostileImages(t *testing.T, e e2e) hostile {
	t.Helper()
	hostileOnce.Do(func() {
		s, err := testutil.NewSentinel("")
		if err != nil {
			hostileErr = err
			return
		}
		hostileEnv, hostileErr = pushHostile(e.registry, s)
	})
	if hostileErr != nil {
		t.Fatalf("pushing hostile images: %v", hostileErr)
	}
	return hostileEnv
}

func pushHostile(registry string, s *testutil.Sentinel) (hostile, error) {
	h := hostile{s: s, images: map[string]string{}, layers: map[string]v1.Hash{}}
	rel := func(p string) string { return up + strings.TrimPrefix(p, "/") }
	suid, err := os.ReadFile(testutil.BusyboxBinary)
	if err != nil {
		return h, err
	}
	layers := map[string][]testutil.Entry{
		// C1: entries whose names leave the rootfs.
		"traversal": {
			testutil.File(rel(s.Escape+"-rel"), "escaped"),
			testutil.File(s.Escape+"-abs", "escaped"),
			testutil.File("/abs-escape", "inside"),
			testutil.File("a/"+rel(s.Dir+"/dotdot"), "escaped"),
		},
		// C2: a write through an absolute symlink, and ".." as a link name.
		"symlink": {
			testutil.Symlink("evil", s.Dir),
			testutil.File("evil/pwned", "escaped"),
			testutil.Symlink("esc", s.Escape+"-link"),
			testutil.File("esc/pwned", "escaped"),
			testutil.Dir("p"),
			testutil.Symlink("p/..", s.Dir),
			testutil.File("p/../pwned2", "escaped"),
		},
		// C3: hardlinks to host files, directly, through a symlinked
		// parent, and a link to a symlink whose mode is then changed.
		"hardlink": {
			testutil.Hardlink("x", rel(s.File)),
			testutil.Symlink("lnk", s.Dir),
			testutil.Hardlink("y", "lnk/sentinel"),
			testutil.Symlink("s", s.Passwd),
			testutil.Hardlink("h", "s"),
			{Header: testutil.Dir("h").Header},
		},
		// C7: device nodes, a setuid binary and a file capability.
		"devices": {
			testutil.CharDev("evil-null", 1, 3),
			testutil.BlockDev("disk", 8, 0),
			testutil.Fifo("fifo"),
			testutil.Setuid("bin/suid", suid[:4096]),
			testutil.WithCapability(testutil.File("bin/capped", "cap\n"), 13),
		},
		// C9: a header claiming 1 TiB over a few bytes of data.
		"truncated": {
			testutil.File("before", "ok"),
			testutil.TruncatedFile("big", 1<<40, "only a few bytes"),
		},
		// C12: /etc/passwd pointing at a host passwd with another uid.
		"passwd": {
			testutil.Symlink("etc/passwd", rel(s.Passwd)),
		},
		// C13: runc's /dev targets replaced by links into host procfs.
		"devnull": {
			testutil.Symlink("dev/null", "/proc/sys/kernel/core_pattern"),
			testutil.Symlink("dev/pts", "/proc/sys/kernel"),
		},
		"devlink": {
			testutil.Whiteout("", "dev"),
			testutil.Symlink("dev", "/proc/sys/kernel"),
		},
		// Whiteouts naming ".." and an opaque directory over /etc.
		"whiteout-dotdot": {
			testutil.Dir("w"),
			testutil.Whiteout("w", ".."),
		},
		"whiteout-root-dotdot": {
			testutil.Whiteout("", ".."),
		},
		"whiteout-opaque": {
			testutil.Opaque("etc"),
			testutil.File("etc/only", "only\n"),
		},
	}
	for name, entries := range layers {
		l, err := testutil.HostileLayer(entries...)
		if err != nil {
			return h, fmt.Errorf("%s: %w", name, err)
		}
		img, err := testutil.OnBusybox(l)
		if err != nil {
			return h, err
		}
		if err := h.push(registry, name, img, l); err != nil {
			return h, err
		}
	}

	// C10/C11: configs that do not match their layers.
	good, err := testutil.HostileLayer(testutil.File("good", "good\n"))
	if err != nil {
		return h, err
	}
	img, err := testutil.OnBusybox(good)
	if err != nil {
		return h, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return h, err
	}
	ids := cfg.RootFS.DiffIDs
	wrong := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256([]byte("not the layer")))}
	for name, d := range map[string][]v1.Hash{
		"diffid-wrong": {ids[0], wrong},
		"diffid-more":  {ids[0], ids[1], wrong},
		"diffid-fewer": {ids[0]},
	} {
		bad, err := testutil.WithDiffIDs(img, d)
		if err != nil {
			return h, err
		}
		if err := h.push(registry, name, bad, good); err != nil {
			return h, err
		}
	}
	// A valid tar followed by garbage, with an honest diff_id.
	tarb, err := testutil.TarBytes(testutil.File("garbage-ok", "fine\n"))
	if err != nil {
		return h, err
	}
	garbage, err := testutil.GzipLayer(append(tarb, []byte(strings.Repeat("GARBAGE!", 1000))...))
	if err != nil {
		return h, err
	}
	if img, err = testutil.OnBusybox(garbage); err != nil {
		return h, err
	}
	if err := h.push(registry, "garbage", img, garbage); err != nil {
		return h, err
	}
	// A plain image for the digest-mismatch proxy case.
	poison, err := testutil.HostileLayer(testutil.File("poison", "the real content\n"))
	if err != nil {
		return h, err
	}
	if img, err = testutil.OnBusybox(poison); err != nil {
		return h, err
	}
	h.poison = poison
	return h, h.push(registry, "poison", img, poison)
}

func (h hostile) push(registry, name string, img v1.Image, l v1.Layer) error {
	ref := registry + "/hostile/" + name + ":v1"
	if err := testutil.Push(context.Background(), ref, img); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d, err := l.Digest()
	if err != nil {
		return err
	}
	h.images[name], h.layers[name] = ref, d
	return nil
}

// hostileRun is one build of a hostile case.
type hostileRun struct {
	e2e
	h    hostile
	root string
	tag  string
	r    result
}

// buildHostile builds dockerfile (BASE is the case's image) in a fresh
// state dir, pushing to a fresh tag, and checks the sentinel afterwards.
func buildHostile(t *testing.T, e e2e, h hostile, base, dockerfile string, args ...string) hostileRun {
	t.Helper()
	dir := writeContext(t, map[string]string{"Dockerfile": dockerfile})
	hr := hostileRun{e2e: e, h: h, root: t.TempDir()}
	hr.tag = fmt.Sprintf("%s/hostile-out/%s:v1", e.registry, strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())))
	full := append([]string{"build", "--root", hr.root, "--runc", e.runc, "--progress", "plain",
		"--build-arg", "BASE=" + base, "-t", hr.tag, "--push"}, args...)
	hr.r = imgbuild(t, "", append(full, dir)...)
	h.s.Check(t)
	return hr
}

// failed checks that the build failed, naming every want, and pushed nothing.
func (hr hostileRun) failed(t *testing.T, want ...string) {
	t.Helper()
	if hr.r.code == 0 {
		t.Fatalf("build succeeded, want a failure naming %q", want)
	}
	for _, w := range want {
		if !strings.Contains(hr.r.stderr, w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	ref, err := name.ParseReference(hr.tag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref); err == nil {
		t.Errorf("%s was pushed by a failed build", hr.tag)
	}
}

// succeeded checks that the build passed and returns the pushed image's
// flattened files.
func (hr hostileRun) succeeded(t *testing.T) map[string]string {
	t.Helper()
	if hr.r.code != 0 {
		t.Fatalf("build failed (exit %d)", hr.r.code)
	}
	return files(t, pull(t, hr.tag))
}

// TestHostileBaseImages builds on base images whose layers aim outside the
// rootfs: every write lands inside the snapshot or the build fails naming
// the layer, and the host sentinel is untouched.
func TestHostileBaseImages(t *testing.T) {
	e := setup(t)
	h := hostileImages(t, e)
	df := func(run string) string { return "ARG BASE\nFROM ${BASE}\n" + run + "\n" }

	t.Run("C1 traversal", func(t *testing.T) {
		t.Parallel()
		// containerd clamps every name to the rootfs.
		fs := buildHostile(t, e, h, h.images["traversal"], df("RUN test -f /abs-escape && test -f "+h.s.Escape+"-abs && echo ok > /ok")).succeeded(t)
		if fs["ok"] != "ok\n" {
			t.Errorf("absolute entries not kept inside the rootfs: ok = %q", fs["ok"])
		}
	})
	t.Run("C2 symlink", func(t *testing.T) {
		t.Parallel()
		// The link stays a link; the file written through it lands in
		// the rootfs at the link's target, resolved inside it.
		fs := buildHostile(t, e, h, h.images["symlink"], df("RUN cat "+h.s.Dir+"/pwned > /seen")).succeeded(t)
		if fs["seen"] != "escaped" {
			t.Errorf("write through the link did not land inside the rootfs: %q", fs["seen"])
		}
	})
	t.Run("C3 hardlink", func(t *testing.T) {
		t.Parallel()
		hr := buildHostile(t, e, h, h.images["hardlink"], df("RUN cat /x /y /h /s 2>/dev/null > /seen; true"))
		if hr.r.code == 0 {
			if fs := hr.succeeded(t); strings.Contains(fs["seen"], h.s.Secret) {
				t.Error("a hardlink in the base image read the host sentinel")
			}
			return
		}
		// The link target is resolved inside the snapshot, where it does
		// not exist.
		hr.failed(t, "extracting layer "+h.layers["hardlink"].String(), filepath.Join(hr.root, "runc-"), "/fs/x: no such file or directory")
	})
	t.Run("C7 block device read", func(t *testing.T) {
		t.Parallel()
		// The device cgroup refuses the open.
		buildHostile(t, e, h, h.images["devices"], df("RUN head -c 1 /disk")).failed(t, "head -c 1 /disk", "Operation not permitted")
	})
	t.Run("C7 setuid and capability kept", func(t *testing.T) {
		t.Parallel()
		hr := buildHostile(t, e, h, h.images["devices"], df("RUN ls -l /bin/suid > /mode && test -c /evil-null && test -p /fifo"))
		fs := hr.succeeded(t)
		if !strings.HasPrefix(fs["mode"], "-rwsr-xr-x") {
			t.Errorf("setuid bit not kept: %q", fs["mode"])
		}
		img := pull(t, hr.tag)
		layers, _ := img.Layers()
		if len(layers) < 2 {
			t.Fatalf("%d layers", len(layers))
		}
		if d, _ := layers[1].Digest(); d != h.layers["devices"] {
			t.Errorf("base layer %s pushed as %s, want it unchanged", h.layers["devices"], d)
		}
	})
	t.Run("C9 truncated entry", func(t *testing.T) {
		t.Parallel()
		buildHostile(t, e, h, h.images["truncated"], df("RUN true")).failed(t, "extracting layer "+h.layers["truncated"].String(), "unexpected EOF")
	})
	t.Run("C11 diff_id wrong", func(t *testing.T) {
		t.Parallel()
		buildHostile(t, e, h, h.images["diffid-wrong"], df("RUN true")).failed(t, "failed to verify layer "+h.layers["diffid-wrong"].String(), "expected diffID")
	})
	t.Run("C11 diff_ids more than layers", func(t *testing.T) {
		t.Parallel()
		buildHostile(t, e, h, h.images["diffid-more"], df("RUN true")).failed(t, "mismatched image rootfs and manifest layers")
	})
	t.Run("C11 diff_ids fewer than layers", func(t *testing.T) {
		t.Parallel()
		buildHostile(t, e, h, h.images["diffid-fewer"], df("RUN true")).failed(t, "mismatched image rootfs and manifest layers")
	})
	t.Run("C10 trailing garbage", func(t *testing.T) {
		t.Parallel()
		fs := buildHostile(t, e, h, h.images["garbage"], df("RUN cat /garbage-ok > /seen")).succeeded(t)
		if fs["seen"] != "fine\n" {
			t.Errorf("seen = %q", fs["seen"])
		}
	})
	t.Run("C10 blob bytes differ from digest", func(t *testing.T) {
		t.Parallel()
		p := testutil.StartFaultProxy(t, e.registry)
		bad := h.layers["poison"].String()
		// The real blob with its last byte flipped: same size, other digest.
		rc, err := h.poison.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		swapped, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		swapped[len(swapped)-1] ^= 0xff
		var lie atomic.Bool
		lie.Store(true)
		p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
			if lie.Load() && testutil.RequestKind(r) == "GET blob" && strings.HasSuffix(r.URL.Path, bad) {
				_, _ = w.Write(swapped)
				return true
			}
			return false
		})
		base := p.Host + strings.TrimPrefix(h.images["poison"], e.registry)
		hr := buildHostile(t, e, h, base, df("RUN cat /poison > /seen"))
		hr.failed(t, "unexpected commit digest", "expected "+bad)
		// The same state dir, the registry honest again: nothing of the
		// swapped blob was kept.
		lie.Store(false)
		dir := writeContext(t, map[string]string{"Dockerfile": df("RUN cat /poison > /seen")})
		r := imgbuild(t, "", "build", "--root", hr.root, "--runc", e.runc, "--progress", "plain", "--build-arg", "BASE="+base, "-t", hr.tag, "--push", dir)
		if r.code != 0 {
			t.Fatalf("rebuild with an honest registry failed (exit %d)", r.code)
		}
		if fs := files(t, pull(t, hr.tag)); fs["seen"] != "the real content\n" {
			t.Errorf("rebuild saw %q: the swapped blob was reused", fs["seen"])
		}
	})
	t.Run("D11 truncated blob on pull", func(t *testing.T) {
		t.Parallel()
		p := testutil.StartFaultProxy(t, e.registry)
		digest := h.layers["garbage"].String()
		p.SetFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
			if testutil.RequestKind(r) == "GET blob" && strings.HasSuffix(r.URL.Path, digest) && n <= 2 {
				// Claim the full length, send the first half of the
				// real blob, close: a connection cut mid-blob.
				resp, err := http.Get("http://" + e.registry + r.URL.Path)
				if err != nil {
					t.Errorf("fetching the blob behind the proxy: %v", err)
					return false
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				w.Header().Set("Content-Length", strconv.Itoa(len(b)))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(b[:len(b)/2])
				return true
			}
			return false
		})
		base := p.Host + strings.TrimPrefix(h.images["garbage"], e.registry)
		fs := buildHostile(t, e, h, base, df("RUN cat /garbage-ok > /seen")).succeeded(t)
		if fs["seen"] != "fine\n" {
			t.Errorf("seen = %q", fs["seen"])
		}
	})
	t.Run("C12 passwd link", func(t *testing.T) {
		t.Parallel()
		hr := buildHostile(t, e, h, h.images["passwd"], df("USER app\nRUN id -u > /tmp/uid"))
		if strings.Contains(hr.r.stderr, "4242") {
			t.Error("USER app resolved through the host's passwd file")
		}
		hr.failed(t, "unable to find user app", "Dockerfile:4")
	})
	t.Run("C13 dev null link", func(t *testing.T) {
		t.Parallel()
		before, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
		hr := buildHostile(t, e, h, h.images["devnull"], df("RUN echo hi > /dev/null"))
		after, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
		if string(before) != string(after) {
			t.Errorf("host core_pattern changed from %q to %q", before, after)
		}
		hr.succeeded(t)
	})
	t.Run("C13 dev link", func(t *testing.T) {
		t.Parallel()
		before, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
		hr := buildHostile(t, e, h, h.images["devlink"], df("RUN echo hi > /dev/core_pattern"))
		after, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
		if string(before) != string(after) {
			t.Errorf("host core_pattern changed from %q to %q", before, after)
		}
		// runc mounts a fresh /dev over the link: the write goes nowhere.
		hr.failed(t, "echo hi > /dev/core_pattern", "exit code: 1")
	})
	t.Run("whiteout of dotdot", func(t *testing.T) {
		t.Parallel()
		buildHostile(t, e, h, h.images["whiteout-dotdot"], df("RUN ls / > /ls")).
			failed(t, "extracting layer "+h.layers["whiteout-dotdot"].String(), "invalid whiteout name: .wh...")
	})
	t.Run("whiteout of root dotdot", func(t *testing.T) {
		t.Parallel()
		buildHostile(t, e, h, h.images["whiteout-root-dotdot"], df("RUN ls / > /ls")).
			failed(t, "extracting layer "+h.layers["whiteout-root-dotdot"].String(), "invalid whiteout name: .wh...")
	})
	t.Run("opaque etc", func(t *testing.T) {
		t.Parallel()
		fs := buildHostile(t, e, h, h.images["whiteout-opaque"], df("RUN ls /etc > /ls")).succeeded(t)
		// runc adds hosts and resolv.conf; busybox's passwd is hidden.
		if !strings.Contains(fs["ls"], "only") || strings.Contains(fs["ls"], "passwd") {
			t.Errorf("ls /etc = %q, want the opaque layer's file and not the lower layer's", fs["ls"])
		}
	})
}

// TestHostileDockerfiles: Dockerfiles that are malformed, ask for
// entitlements, or reach for paths outside the context and cache roots.
func TestHostileDockerfiles(t *testing.T) {
	e := setup(t)
	h := hostileImages(t, e)
	// A registry that logs every request: a refused frontend is never pulled.
	proxy := testutil.StartFaultProxy(t, e.registry)
	frontend := proxy.Host + "/evil/fe:1"
	up4 := strings.Repeat("../", 4)

	for _, tc := range []struct {
		name, dockerfile string
		args             []string
		want             []string // a failure naming these; none: success
		check            func(t *testing.T, hr hostileRun)
	}{
		{name: "A1 empty", dockerfile: "", want: []string{"the Dockerfile cannot be empty"}},
		{name: "A1 comments only", dockerfile: "# just\n\n# comments\n", want: []string{"file with no instructions"}},
		{name: "A2 long line", dockerfile: "ARG BASE\nFROM ${BASE}\nLABEL a=" + strings.Repeat("x", 70000) + "\n",
			want: []string{"dockerfile line greater than max allowed size of 65535"}},
		{name: "A3 circular stages", dockerfile: "ARG BASE\nFROM ${BASE} AS a\nCOPY --from=b / /\nFROM ${BASE} AS b\nCOPY --from=a / /\n",
			want: []string{"circular dependency detected on stage: a"}},
		{name: "A3 blank base", dockerfile: "FROM ${UNSET}\nRUN true\n", want: []string{"base name (${UNSET}) should not be blank"}},
		{name: "A5 syntax build-arg", dockerfile: "ARG BASE\nFROM ${BASE}\n", args: []string{"--build-arg", "BUILDKIT_SYNTAX=" + frontend},
			want: []string{frontend, "--allow-external-frontend"}},
		{name: "A6 network host", dockerfile: "ARG BASE\nFROM ${BASE}\nRUN --network=host true\n", want: []string{"network.host is not allowed"}},
		{name: "A6 security insecure", dockerfile: "ARG BASE\nFROM ${BASE}\nRUN --security=insecure true\n", want: []string{"security.insecure is not allowed"}},
		{name: "A9 COPY parent", dockerfile: "ARG BASE\nFROM ${BASE}\nCOPY ../outside /\n", want: []string{`"/outside" not found`, "Dockerfile:3"}},
		{name: "A8 tmpfs stub cleanup", dockerfile: "ARG BASE\nFROM ${BASE}\nRUN --mount=type=tmpfs,target=/a/sub/keep sh -c 'rm -rf /a; ln -s " + h.s.Dir + " /a'\n"},
		{name: "A9 bind source parent", dockerfile: "ARG BASE\nFROM ${BASE}\nRUN --mount=type=bind,source=" + up + ",target=/x test -f /x/Dockerfile && ! test -e /x" + h.s.File + " && echo confined > /ok\n",
			check: func(t *testing.T, hr hostileRun) {
				if fs := hr.succeeded(t); fs["ok"] != "confined\n" {
					t.Errorf("ok = %q", fs["ok"])
				}
			}},
		{name: "A9 cache id parent", dockerfile: "ARG BASE\nFROM ${BASE}\nRUN --mount=type=cache,id=" + up + strings.TrimPrefix(h.s.Escape, "/") + "-cache,target=/c touch /c/f\n",
			check: func(t *testing.T, hr hostileRun) {
				hr.succeeded(t)
				matches, _ := filepath.Glob(filepath.Join(hr.root, up4, "*", "f"))
				if len(matches) > 0 {
					t.Errorf("cache mount written outside the state dir: %v", matches)
				}
			}},
		// A7's core, without the race: one stage leaves the cache's sub
		// as a link to the host; the next mounts source=sub.
		{name: "A7 cache source link", dockerfile: "ARG BASE\nFROM ${BASE} AS one\n" +
			"RUN --mount=type=cache,id=c,target=/c sh -c 'rm -rf /c/sub; ln -s " + h.s.Dir + " /c/sub' && touch /one\n" +
			"FROM ${BASE}\nCOPY --from=one /one /one\n" +
			"RUN --mount=type=cache,id=c,source=sub,target=/c ! test -e /c/sentinel && echo confined > /ok\n",
			check: func(t *testing.T, hr hostileRun) {
				if hr.r.code == 0 {
					if fs := hr.succeeded(t); fs["ok"] != "confined\n" {
						t.Errorf("ok = %q", fs["ok"])
					}
					return
				}
				// source=sub resolved inside the cache mount, where the
				// link's target does not exist.
				hr.failed(t, filepath.Join(hr.root, "runc-"), h.s.Dir[1:]+": no such file or directory")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hr := buildHostile(t, e, h, e.base, tc.dockerfile, tc.args...)
			switch {
			case tc.check != nil:
				tc.check(t, hr)
			case tc.want != nil:
				hr.failed(t, tc.want...)
			default:
				hr.succeeded(t)
			}
		})
	}
	t.Cleanup(func() {
		if n := proxy.Count("GET manifest") + proxy.Count("HEAD manifest") + proxy.Count("GET blob"); n != 0 {
			t.Errorf("the refused frontend's registry saw %d requests", n)
		}
	})
}

// TestHostileContexts: build contexts that reach outside themselves.
func TestHostileContexts(t *testing.T) {
	e := setup(t)
	h := hostileImages(t, e)

	t.Run("B3 tar context traversal", func(t *testing.T) {
		t.Parallel()
		b, err := testutil.TarBytes(
			testutil.File("Dockerfile", "ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\n"),
			testutil.File(up+strings.TrimPrefix(h.s.Escape, "/")+"-tar", "escaped"),
			testutil.File(h.s.Escape+"-tarabs", "escaped"),
			testutil.Hardlink("pw", up+strings.TrimPrefix(h.s.File, "/")),
		)
		if err != nil {
			t.Fatal(err)
		}
		tag := e.registry + "/hostile-out/b3:v1"
		r := e.executor(t, string(b), "--context", "tar://stdin", "--destination", tag)
		h.s.Check(t)
		hr := hostileRun{e2e: e, h: h, tag: tag, r: r}
		if r.code == 0 {
			t.Fatal("a context tar with escaping entries was accepted")
		}
		hr.failed(t, "--context tar://stdin", "pw")
	})
	t.Run("B7 git credentials", func(t *testing.T) {
		t.Parallel()
		tok := "tok" + h.s.Secret[:20]
		dir := writeContext(t, map[string]string{
			"Dockerfile":  "ARG BASE\nFROM ${BASE}\nCOPY Dockerfile /\n",
			".git/config": "[remote \"origin\"]\n\turl = https://u:" + tok + "@git.example/r\n",
			".git/HEAD":   "ref: refs/heads/main\n",
		})
		tag := e.registry + "/hostile-out/b7:v1"
		r := e.build(t, t.TempDir(), "-t", tag, "--push", dir)
		if r.code != 0 {
			t.Fatal(r.stderr)
		}
		img := pull(t, tag)
		if strings.Contains(string(allBlobs(t, img)), tok) || strings.Contains(r.stderr+r.stdout, tok) {
			t.Error("the context's git credential is in the image or the output")
		}
	})
	t.Run("A10 git subdir traversal", func(t *testing.T) {
		t.Parallel()
		srv := gitServer(t, map[string]string{"inside": "in\n"})
		df := "ARG BASE\nFROM ${BASE}\nADD " + srv + "/app.git#main:" + up + " /x\nRUN ls -R /x > /ls\n"
		hr := buildHostile(t, e, h, e.base, df)
		if hr.r.code == 0 {
			if fs := hr.succeeded(t); strings.Contains(fs["ls"], "imgbuild-sentinel") || strings.Contains(fs["ls"], "etc") {
				t.Errorf("the git subdir left the repository:\n%s", fs["ls"])
			}
			return
		}
		hr.failed(t, "app.git")
	})
}

// gitServer serves a one-commit repository (branch main) with files over
// git's smart HTTP protocol and returns its base URL. With a token, a
// request must carry it as its basic auth user name (kaniko's GIT_TOKEN).
func gitServer(t *testing.T, files map[string]string, token ...string) string {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	testutil.Require(t, err == nil, "git is not installed")
	backend := filepath.Join(execPath(t, gitBin), "git-http-backend")
	root := t.TempDir()
	work := writeContext(t, files)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "c"}, {"clone", "-q", "--bare", work, filepath.Join(root, "app.git")}} {
		c := exec.Command("git", args...)
		c.Dir = work
		c.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	var h http.Handler = &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	if len(token) > 0 {
		backend := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, _, ok := r.BasicAuth(); !ok || user != token[0] {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			backend.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
