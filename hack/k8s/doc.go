// Package k8s holds imgbuild's example Kubernetes Jobs (the YAML files
// here). It has no code: its test decodes every manifest strictly and
// checks it against the Pod Security level it claims.
package k8s
