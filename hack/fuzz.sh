#!/usr/bin/env bash
# Runs the go test -fuzz targets of the parsers imgbuild owns for a short
# while each. Their seed corpora also run as plain tests in every go test.
#
# Environment:
#   FUZZTIME      how long each target runs (default 10s)
#   FUZZ_PACKAGES the packages to fuzz (default: every package with a target).
#                 make test fuzzes only ./pkg/kaniko, which does not link
#                 BuildKit: an instrumented build of a package that does
#                 takes minutes of CI time before the first input runs.
#   GO            the go command (default go)
set -o errexit -o nounset -o pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${PROJECT_ROOT}"

fuzztime="${FUZZTIME:-10s}"
go="${GO:-go}"
packages="${FUZZ_PACKAGES:-$(grep -l '^func Fuzz' $(git ls-files '*_test.go' 2>/dev/null || find . -name '*_test.go') | xargs -n1 dirname | sort -u | sed 's#^#./#; s#^\./\./#./#')}"

# go test -fuzz takes one target of one package at a time.
for pkg in ${packages}; do
	for target in $(grep -ho "^func Fuzz[A-Za-z0-9_]*" "${pkg}"/*_test.go | cut -d" " -f2); do
		echo "fuzz: ${pkg} ${target} for ${fuzztime}" >&2
		"${go}" test -run '^$' -fuzz "^${target}\$" -fuzztime "${fuzztime}" -parallel 2 "${pkg}"
	done
done
