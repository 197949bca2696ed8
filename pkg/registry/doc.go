// Package registry moves built images out of imgbuild: it pushes a
// [v1.Image] or [v1.ImageIndex] to one or more registries through a single
// long-lived go-containerregistry pusher ([Pusher]) and writes OCI layout
// directories ([WriteOCILayout]); BuildKit's exporters write the tarballs. The small
// registry `imgbuild registry serve` runs is its subpackage server.
//
// It also holds imgbuild's one identity: [NewKeychain] (docker config,
// $REGISTRY_AUTH_FILE and the ECR, Google, ACR and GHCR keychains), used for
// pulls and pushes alike, and [Login]/[Logout] for docker's config.json.
// Pushes go through per-registry TLS settings ([HostConfig]), retry
// temporary failures honouring Retry-After, refuse upload locations aimed at
// internal addresses, check the digests the registry reports
// ([DigestMismatchError]) and read every tag back. A blob already in another
// repository of the target registry (pushed there by the same call, or known
// from [Options.BlobSources]) is mounted rather than uploaded.
// [Pusher.PushArtifact] and [Pusher.PullArtifact] move OCI 1.1 artifacts
// (the builder's cache mounts) to refs several writers share.
//
// It uses go-containerregistry only and never imports BuildKit: the builder
// hands over images as ggcr values, whatever produced them.
package registry
