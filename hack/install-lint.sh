#!/usr/bin/env bash
# Builds golangci-lint into bin/golangci-lint from the Go module proxy, so
# `make lint` needs nothing but Go on a fresh machine.
#
# Environment:
#   GOLANGCI_LINT_VERSION  version to build (default v2.15.0)
set -o errexit -o nounset -o pipefail
# Builds another module: not the workspace of our patched BuildKit.
export GOWORK=off

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="${GOLANGCI_LINT_VERSION:-v2.15.0}"
bin="${PROJECT_ROOT}/bin/golangci-lint"

if [[ -x "${bin}" ]] && "${bin}" version 2>/dev/null | grep -q "version ${want#v} "; then
	exit 0
fi
echo "install-lint: building golangci-lint ${want}" >&2
mkdir -p "${PROJECT_ROOT}/bin"
GOBIN="${PROJECT_ROOT}/bin" CGO_ENABLED=0 go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${want}"
