// These files are not built here: hack/buildkit-src.sh copies them over
// BuildKit's (README.md). This go.mod keeps them out of the main module.
module github.com/imgbuild/imgbuild/third_party/buildkit

go 1.26
