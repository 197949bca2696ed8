#!/bin/sh
# Makes bin/buildkit-src, BuildKit's module with the patched files of
# third_party/buildkit (see its README), and bin/go.work, the workspace that
# builds imgbuild against it. The Makefile sets GOWORK to that file; a go
# command without it builds against BuildKit as downloaded.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
bin=$repo/bin
src=$bin/buildkit-src
patches=$repo/third_party/buildkit
# The workspace being written must not apply to the go commands that write it.
export GOWORK=off
version=$(cd "$repo" && $GO list -m -f '{{.Version}}' github.com/moby/buildkit)
stamp=$version-$(cat "$patches/upstream.sha256" $(awk '{print "'"$patches"'/"$2}' "$patches/upstream.sha256") | sha256sum | cut -c1-16)
if [ -f "$src/.imgbuild-stamp" ] && [ "$(cat "$src/.imgbuild-stamp")" = "$stamp" ] && [ -f "$bin/go.work" ]; then
	exit 0
fi
dir=$(cd "$repo" && $GO mod download -json github.com/moby/buildkit | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if ! (cd "$dir" && sha256sum --quiet -c "$patches/upstream.sha256") >&2; then
	echo "buildkit-src: BuildKit $version differs from the files third_party/buildkit was patched from; redo the patches (third_party/buildkit/README.md)" >&2
	exit 1
fi
rm -rf "$src.tmp"
mkdir -p "$bin"
cp -R "$dir" "$src.tmp"
chmod -R u+w "$src.tmp"
for f in $(awk '{print $2}' "$patches/upstream.sha256"); do
	cp "$patches/$f" "$src.tmp/$f"
done
echo "$stamp" >"$src.tmp/.imgbuild-stamp"
rm -rf "$src"
mv "$src.tmp" "$src"
goversion=$(sed -n 's/^go \(.*\)$/\1/p' "$repo/go.mod")
cat >"$bin/go.work.tmp" <<WORK
go $goversion

use ..

replace github.com/moby/buildkit $version => ./buildkit-src
WORK
mv "$bin/go.work.tmp" "$bin/go.work"
