package k8s_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/imgbuild/imgbuild/internal/k8stest"
)

func evaluator(t *testing.T) policy.Evaluator {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestManifestsMeetTheirPodSecurityLevel decodes every Job in hack/k8s
// strictly and evaluates its pod template with the upstream Pod Security
// evaluator at the level the Job claims, at the latest version of the
// standards (what a namespace labelled
// pod-security.kubernetes.io/enforce: LEVEL enforces by default).
func TestManifestsMeetTheirPodSecurityLevel(t *testing.T) {
	paths, err := k8stest.Manifests()
	if err != nil {
		t.Fatal(err)
	}
	ev := evaluator(t)
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			job, err := k8stest.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			claim, ok := job.Annotations[k8stest.PodSecurityAnnotation]
			if !ok {
				t.Fatalf("%s: no %s annotation on the Job", path, k8stest.PodSecurityAnnotation)
			}
			level, err := psapi.ParseLevel(claim)
			if err != nil {
				t.Fatalf("%s: %s: %v", path, k8stest.PodSecurityAnnotation, err)
			}
			rung := job.Annotations[k8stest.ExecutorAnnotation]
			if !slices.Contains(k8stest.Rungs, rung) {
				t.Fatalf("%s: %s is %q, want one of %v", path, k8stest.ExecutorAnnotation, rung, k8stest.Rungs)
			}
			tpl := job.Spec.Template
			res := policy.AggregateCheckResults(ev.EvaluatePod(
				psapi.LevelVersion{Level: level, Version: psapi.LatestVersion()}, &tpl.ObjectMeta, &tpl.Spec))
			if !res.Allowed {
				t.Errorf("%s claims Pod Security %q but violates it: %s", path, level, res.ForbiddenDetail())
			}
			// A claim weaker than the pod needs hides what it asks of
			// the cluster: claim the strictest level that holds.
			if stricter, ok := stricterLevel(level); ok {
				res := policy.AggregateCheckResults(ev.EvaluatePod(
					psapi.LevelVersion{Level: stricter, Version: psapi.LatestVersion()}, &tpl.ObjectMeta, &tpl.Spec))
				if res.Allowed {
					t.Errorf("%s claims Pod Security %q but meets %q: claim that", path, level, stricter)
				}
			}
		})
	}
}

func stricterLevel(l psapi.Level) (psapi.Level, bool) {
	switch l {
	case psapi.LevelPrivileged:
		return psapi.LevelBaseline, true
	case psapi.LevelBaseline:
		return psapi.LevelRestricted, true
	}
	return "", false
}

// TestEvaluatorRefusesWhatBaselineForbids keeps the test above honest: the
// default pod's manifest with each setting the other pods need is
// refused at baseline.
func TestEvaluatorRefusesWhatBaselineForbids(t *testing.T) {
	ev := evaluator(t)
	for _, tc := range []struct {
		name   string
		change func(*corev1.PodSpec)
		reason string
	}{
		{"seccomp Unconfined", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, "seccompProfile"},
		{"CAP_SYS_ADMIN", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}
		}, "capabilities"},
		{"privileged", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Privileged = new(true)
		}, "privileged"},
		{"procMount Unmasked without hostUsers: false", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.ProcMount = new(corev1.UnmaskedProcMount)
		}, "procMount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job, err := k8stest.LoadNamed("job-default-pod.yaml")
			if err != nil {
				t.Fatal(err)
			}
			tpl := job.Spec.Template
			if tpl.Spec.Containers[0].SecurityContext == nil {
				tpl.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{}
			}
			tc.change(&tpl.Spec)
			res := policy.AggregateCheckResults(ev.EvaluatePod(
				psapi.LevelVersion{Level: psapi.LevelBaseline, Version: psapi.LatestVersion()}, &tpl.ObjectMeta, &tpl.Spec))
			if res.Allowed {
				t.Fatalf("baseline allowed the default pod with %s", tc.name)
			}
			if !slices.Contains(res.ForbiddenReasons, tc.reason) && !strings.Contains(strings.Join(res.ForbiddenReasons, ","), tc.reason) {
				t.Errorf("forbidden reasons %v, want %q among them", res.ForbiddenReasons, tc.reason)
			}
		})
	}
}

// TestLoadIsStrict: a misspelt field is refused, not dropped.
func TestLoadIsStrict(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostUser: false\n      containers: []\n",
		"two documents": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Secret\n",
		"not a Job":     "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := k8stest.Load(path); err == nil {
				t.Fatalf("Load accepted %s", name)
			} else if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
		})
	}
}
