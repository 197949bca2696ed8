#!/usr/bin/env bash
# Runs every go test -fuzz target of the flag parsers for a short while.
#
# Environment:
#   FUZZTIME  how long each target runs (default 10s; make test uses 3s)
#   GO        the go command (default go)
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${PROJECT_ROOT}"

fuzztime="${FUZZTIME:-10s}"
go="${GO:-go}"

# go test -fuzz takes one target of one package at a time.
for pkg in ./cmd/imgbuild/cmd ./pkg/builder ./pkg/kaniko; do
	for target in $(grep -ho "^func Fuzz[A-Za-z0-9_]*" "${pkg}"/*_test.go | cut -d" " -f2); do
		echo "fuzz: ${pkg} ${target} for ${fuzztime}" >&2
		"${go}" test -run '^$' -fuzz "^${target}\$" -fuzztime "${fuzztime}" -parallel 2 "${pkg}"
	done
done
