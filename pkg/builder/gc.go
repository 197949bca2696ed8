package builder

import bkclient "github.com/moby/buildkit/client"

// gcRule is BuildKit's prune rule; a later change exposes a GC policy.
type gcRule = bkclient.PruneInfo
