package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one entry of a hostile layer: a tar header and its body, or raw
// bytes written as they are (for headers archive/tar refuses to write).
type Entry struct {
	Header tar.Header
	Body   []byte
	// Truncate ends the archive after Body even though Header.Size claims
	// more: no padding, no further entries, no end-of-archive blocks.
	Truncate bool
	// Raw, when set, is written verbatim instead of Header and Body.
	Raw []byte
}

// hostileTime is every entry's mtime, so hostile images have stable digests.
var hostileTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// File is a regular file with mode 0644.
func File(name, body string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, Body: []byte(body)}
}

// Dir is a directory with mode 0755.
func Dir(name string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

// Symlink is name -> target, target written as given (absolute, "..", ...).
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// Hardlink is name linked to target, target written as given.
func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// Whiteout deletes dir/name from the layers below (".wh." + name).
func Whiteout(dir, name string) Entry {
	return File(joinEntry(dir, ".wh."+name), "")
}

// Opaque hides everything below dir in the layers below.
func Opaque(dir string) Entry {
	return File(joinEntry(dir, ".wh..wh..opq"), "")
}

// CharDev is a character device node major:minor.
func CharDev(name string, major, minor int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}}
}

// BlockDev is a block device node major:minor.
func BlockDev(name string, major, minor int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: name, Mode: 0o660, Devmajor: major, Devminor: minor}}
}

// Fifo is a named pipe.
func Fifo(name string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o644}}
}

// Setuid is a root-owned regular file with mode 04755.
func Setuid(name string, body []byte) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o4755}, Body: body}
}

// WithCapability gives e a security.capability xattr (PAX
// SCHILY.xattr.security.capability) granting caps in the permitted and
// effective sets, as setcap(8) writes it (VFS_CAP_REVISION_2).
func WithCapability(e Entry, caps ...uint) Entry {
	var lo, hi uint32
	for _, c := range caps {
		if c < 32 {
			lo |= 1 << c
		} else {
			hi |= 1 << (c - 32)
		}
	}
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], lo)           // permitted
	binary.LittleEndian.PutUint32(b[12:], hi)
	if e.Header.PAXRecords == nil {
		e.Header.PAXRecords = map[string]string{}
	}
	e.Header.PAXRecords["SCHILY.xattr.security.capability"] = string(b)
	return e
}

// TruncatedFile is a file whose header claims size bytes but whose archive
// ends after body.
func TruncatedFile(name string, size int64, body string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size}, Body: []byte(body), Truncate: true}
}

// SparseFile is an old-GNU sparse entry ('S') of logical size realSize
// whose only data is body at offset 0: the rest is a hole that a reader
// expands to zeros. archive/tar cannot write these, so the header is built
// by hand.
func SparseFile(name string, realSize int64, body string) Entry {
	var blk [512]byte
	copy(blk[0:100], name)
	octal(blk[100:108], 0o644)
	octal(blk[108:116], 0)
	octal(blk[116:124], 0)
	octal(blk[124:136], int64(len(body))) // bytes stored in the archive
	octal(blk[136:148], hostileTime.Unix())
	blk[156] = 'S'
	copy(blk[257:265], "ustar  \x00") // old GNU magic and version
	// The sparse map in the header: one data region, then the real size.
	octal(blk[386:398], 0)
	octal(blk[398:410], int64(len(body)))
	octal(blk[483:495], realSize)
	for i := 148; i < 156; i++ {
		blk[i] = ' '
	}
	var sum int64
	for _, c := range blk {
		sum += int64(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	raw := append(blk[:], body...)
	if pad := len(body) % 512; pad != 0 {
		raw = append(raw, make([]byte, 512-pad)...)
	}
	return Entry{Raw: raw}
}

// octal writes v as a tar numeric field: octal digits, or GNU base-256 when
// they do not fit (sizes of 8 GiB and more).
func octal(b []byte, v int64) {
	s := fmt.Sprintf("%0*o", len(b)-1, v)
	if len(s) < len(b) {
		copy(b, s)
		b[len(b)-1] = 0
		return
	}
	for i := len(b) - 1; i > 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	b[0] = 0x80
}

func joinEntry(dir, name string) string {
	if dir == "" || dir == "." || dir == "/" {
		return name
	}
	return dir + "/" + name
}

// TarBytes writes entries as an uncompressed tar archive. Headers keep their
// names and link targets byte for byte: nothing is cleaned.
func TarBytes(entries ...Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if e.Raw != nil {
			if err := tw.Flush(); err != nil {
				return nil, err
			}
			buf.Write(e.Raw)
			continue
		}
		h := e.Header
		h.ModTime = hostileTime
		if h.Typeflag == tar.TypeReg && !e.Truncate {
			h.Size = int64(len(e.Body))
		}
		if h.PAXRecords != nil {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("writing %s: %w", h.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			return nil, fmt.Errorf("writing %s: %w", h.Name, err)
		}
		if e.Truncate {
			// Stop here: the tar writer would pad and complain on Close.
			return buf.Bytes(), nil
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GzipLayer gzips an uncompressed layer (a tar, or any bytes at all) as an
// OCI layer. Its DiffID is the digest of exactly those bytes.
func GzipLayer(uncompressed []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(uncompressed); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	gz := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// HostileLayer is [TarBytes] gzipped by [GzipLayer].
func HostileLayer(entries ...Entry) (v1.Layer, error) {
	b, err := TarBytes(entries...)
	if err != nil {
		return nil, err
	}
	return GzipLayer(b)
}

// OnBusybox appends layers to [BusyboxImage], so RUN steps have a shell.
func OnBusybox(layers ...v1.Layer) (v1.Image, error) {
	base, err := BusyboxImage()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		base, err = mutate.Append(base, mutate.Addendum{Layer: l, MediaType: types.OCILayer})
		if err != nil {
			return nil, fmt.Errorf("appending layer: %w", err)
		}
	}
	return base, nil
}

// WithDiffIDs replaces img's config rootfs.diff_ids, keeping its layers:
// for configs whose diff_ids do not match the layers, or are fewer or more.
func WithDiffIDs(img v1.Image, diffIDs []v1.Hash) (v1.Image, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs = diffIDs
	return mutate.ConfigFile(img, cfg)
}
