// Package imagetools merges images already in a registry into one image
// index, as docker buildx imagetools create does: the step after one
// runner per architecture pushed its image by digest. Each child keeps its
// manifest bytes and digest, and gets its platform from its config; nothing
// is rebuilt, and pushing the index ([registry.Pusher.PushIndex]) copies
// only what the destination repository lacks, mounting blobs from the
// source repositories of the same registry.
package imagetools
