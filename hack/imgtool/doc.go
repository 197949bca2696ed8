// Command imgtool is a small developer tool for the demo and benchmarks: it
// pushes the test busybox base image (or a rootfs tarball as a one-layer
// image) to a registry and shows what an image built by imgbuild contains.
//
//	go run ./hack/imgtool push-busybox 127.0.0.1:5000/busybox:latest
//	go run ./hack/imgtool push-rootfs bookworm.tar 127.0.0.1:5000/debian:bookworm
//	go run ./hack/imgtool show 127.0.0.1:5000/demo:latest
//	go run ./hack/imgtool show 127.0.0.1:5000/demo:latest --cat /app/built.txt
//
// Registries on loopback are spoken to over plain HTTP.
package main
