// Package archtest holds the tests that keep the tree's import rules: the
// direction of the data flow (cmd → builder → publish/registry) only holds
// while nobody adds an import across it.
package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/imgbuild/imgbuild"

// rules say which of the module's packages may import a dependency: a
// package under one of the allowed prefixes. The longest matching dep
// prefix decides.
var rules = []struct {
	dep     string
	allowed []string
}{
	// BuildKit, and what only BuildKit's wiring needs, stay behind pkg/builder.
	{"github.com/moby/buildkit", []string{module + "/pkg/builder"}},
	{"github.com/containerd/containerd", []string{module + "/pkg/builder", module + "/internal/podsim"}},
	// containerd's archive code, which refuses entries escaping the
	// directory, also unpacks kaniko's tar contexts.
	{"github.com/containerd/containerd/v2/pkg/archive", []string{module + "/pkg/builder", module + "/pkg/kaniko"}},
	// The CLI framework stays in the CLI.
	{"github.com/spf13/cobra", []string{module + "/cmd/"}},
	{"github.com/spf13/pflag", []string{module + "/cmd/"}},
	// Kubernetes' API modules are for the tests of hack/k8s's manifests
	// and the pod simulator (containerd's spec generation too), which the
	// e2e tests and the benchmark run; TestBinaryHasNoKubernetesModules
	// keeps both out of the binary.
	{"k8s.io/", []string{module + "/internal/k8stest", module + "/internal/podsim"}},
	{"sigs.k8s.io/", []string{module + "/internal/k8stest", module + "/internal/podsim"}},
	// Libraries never reach up into the CLI.
	{module + "/cmd/", []string{module + "/cmd/"}},
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pkgs++
		pkg, imports := f[0], f[1:]
		for _, imp := range imports {
			best := -1
			for i, r := range rules {
				if strings.HasPrefix(imp, r.dep) && (best < 0 || len(r.dep) > len(rules[best].dep)) {
					best = i
				}
			}
			if best >= 0 && !allowed(pkg, rules[best].allowed) {
				t.Errorf("%s imports %s; only %s may", pkg, imp, strings.Join(rules[best].allowed, ", "))
			}
		}
	}
	if pkgs < 5 {
		t.Fatalf("go list found %d packages; the rules checked nothing", pkgs)
	}
}

func allowed(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if pkg == strings.TrimSuffix(p, "/") || strings.HasPrefix(pkg, p) || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// TestBinaryHasNoKubernetesModules: the manifests' tests bring k8s.io
// modules into go.mod; none may reach the imgbuild binary, directly or
// through another dependency.
func TestBinaryHasNoKubernetesModules(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-deps", module+"/cmd/imgbuild")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.String())
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed %d packages; the check checked nothing", len(deps))
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "k8s.io/") || strings.HasPrefix(d, "sigs.k8s.io/") {
			t.Errorf("%s/cmd/imgbuild depends on %s", module, d)
		}
	}
}
