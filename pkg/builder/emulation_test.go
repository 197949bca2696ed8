package builder

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCheckEmulation(t *testing.T) {
	old := supportedPlatforms
	t.Cleanup(func() { supportedPlatforms = old })
	supportedPlatforms = func() []ocispecs.Platform {
		return []ocispecs.Platform{platforms.MustParse("linux/amd64"), platforms.MustParse("linux/386")}
	}
	for _, tc := range []struct {
		name, df, platform, target string
		stage                      string // "" when the build may go on
		line                       int
	}{
		{"host platform", "FROM busybox\nRUN true\n", "linux/amd64", "", "", 0},
		{"emulated by binfmt", "FROM busybox\nRUN true\n", "linux/386", "", "", 0},
		{"no platform", "FROM busybox\nRUN true\n", "", "", "", 0},
		{"foreign RUN", "FROM busybox\nCOPY a /a\nRUN true\n", "linux/arm64", "", "0", 3},
		{"foreign, no RUN", "FROM busybox\nCOPY a /a\n", "linux/arm64", "", "", 0},
		{"cross-compile", "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nRUN GOARCH=$TARGETARCH go build\nFROM scratch\nCOPY --from=build /app /app\n", "linux/arm64", "", "", 0},
		{"cross-compile, braces", "FROM --platform=${BUILDPLATFORM} golang AS build\nRUN go build\nFROM build AS more\nRUN strip /app\nFROM scratch\nCOPY --from=more /app /app\n", "linux/arm64", "", "", 0},
		{"foreign final RUN", "FROM --platform=$BUILDPLATFORM golang AS build\nRUN go build\nFROM alpine\nCOPY --from=build /app /app\nRUN /app --selftest\n", "linux/arm64", "", "1", 5},
		{"unused stage", "FROM alpine AS tests\nRUN make test\nFROM scratch\nCOPY x /x\n", "linux/arm64", "", "", 0},
		{"target stage", "FROM alpine AS tests\nRUN make test\nFROM scratch\nCOPY x /x\n", "linux/arm64", "tests", "tests", 2},
		{"through COPY --from", "FROM alpine AS gen\nRUN gen > /out\nFROM scratch\nCOPY --from=gen /out /out\n", "linux/arm64/v8", "", "gen", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkEmulation("ctx/Dockerfile", []byte(tc.df), tc.platform, tc.target)
			if tc.stage == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ee *EmulationError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want an *EmulationError", err)
			}
			if ee.Stage != tc.stage || ee.Line != tc.line {
				t.Errorf("stage %q line %d, want %q line %d", ee.Stage, ee.Line, tc.stage, tc.line)
			}
			for _, want := range []string{"ctx/Dockerfile:", "linux/arm64", "linux/amd64, linux/386", "qemu-user-static", "binfmt_misc/qemu-aarch64", "$BUILDPLATFORM"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q lacks %q", err, want)
				}
			}
		})
	}
	if err := checkEmulation("Dockerfile", []byte("FROM x\n"), "linux/notanarch/x/y", ""); err == nil {
		t.Error("a bad --platform passed")
	}
}
