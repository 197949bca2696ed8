package builder

import (
	"slices"
	"testing"
)

func TestBaseImages(t *testing.T) {
	t.Parallel()
	df := []byte(`# syntax=docker/dockerfile:1
ARG BASE=internal.example:5000/base:1
ARG TOOLS
FROM ${BASE} AS build
RUN echo FROM not.an.image:1
FROM --platform=linux/amd64 $TOOLS AS tools
FROM build
COPY --from=tools /x /x
FROM scratch
`)
	got, err := BaseImages(df, map[string]string{"TOOLS": "mirror.example/tools:2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"internal.example:5000/base:1", "mirror.example/tools:2"}
	if !slices.Equal(got, want) {
		t.Fatalf("BaseImages = %q, want %q", got, want)
	}
	if _, err := BaseImages([]byte("FROM\n"), nil); err == nil {
		t.Fatal("a FROM without an image parsed")
	}
}
