// Package k8stest reads the Kubernetes Jobs in hack/k8s for the tests that
// check them (the Pod Security test in hack/k8s) and for the pod simulator
// (internal/podsim), which the e2e tests and the benchmark run. Only those
// import it, which keeps k8s.io modules out of the imgbuild binary.
package k8stest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// The annotations every Job in hack/k8s carries on its metadata.
const (
	// PodSecurityAnnotation names the Pod Security Standards level the
	// Job's pod template meets: privileged, baseline or restricted.
	PodSecurityAnnotation = "imgbuild.dev/pod-security"
	// ExecutorAnnotation names the executor rung imgbuild picks in the
	// Job's pod: runc, runc-no-sandbox or inplace.
	ExecutorAnnotation = "imgbuild.dev/executor"
)

// Rungs are the executor rungs an ExecutorAnnotation may name, strongest
// isolation first.
var Rungs = []string{"runc", "runc-no-sandbox", "inplace"}

// Dir is hack/k8s in this checkout.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "hack", "k8s")
}

// Manifests returns the paths of the YAML files in hack/k8s, sorted.
func Manifests() ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(Dir(), "*.yaml"))
	if err != nil {
		return nil, err
	}
	yml, err := filepath.Glob(filepath.Join(Dir(), "*.yml"))
	if err != nil {
		return nil, err
	}
	paths = append(paths, yml...)
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("no manifests in %s", Dir())
	}
	return paths, nil
}

// Load decodes the Job in path strictly: a field the k8s.io/api types do
// not have, a duplicate field, or a second YAML document is an error, so a
// typo in a manifest cannot pass as a setting the cluster would ignore.
func Load(path string) (*batchv1.Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if docSeparator.Match(b) {
		return nil, fmt.Errorf("%s: holds more than one YAML document; one Job per file", path)
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		return nil, fmt.Errorf("%s: is %s %s, want batch/v1 Job", path, job.APIVersion, job.Kind)
	}
	return &job, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---(\s|$)`)

// LoadNamed loads hack/k8s/name.
func LoadNamed(name string) (*batchv1.Job, error) {
	return Load(filepath.Join(Dir(), name))
}
