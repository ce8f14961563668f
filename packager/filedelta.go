package packager

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// A package of form [FileDeltas] may carry a rewritten compressible file
// (a CSV database, a JSON file) as a delta member: one zstd frame
// compressed with the version the package's origin cut holds at the same
// path as a raw dictionary. The member's tar header names the file; its
// size is the frame's; its PAX record [PAXDeltaBase] is the SHA-256 of the
// content it starts from, which the origin's signed manifest lists for that
// path. The reader decodes the frame against that content, checked against
// the hash first, and checks the result against the signed manifest like
// any member. A file whose delta would not be smaller than the file
// compressed alone travels whole.

// PackageForm says how a package carries the files a cut rewrote.
type PackageForm uint8

const (
	// WholeFiles carries every changed file whole: any apply takes it.
	WholeFiles PackageForm = iota
	// FileDeltas carries rewritten compressible files as delta members
	// against the origin cut's versions, where that is smaller; only for
	// an apply that announces [DeltaZstd] in its greeting.
	FileDeltas
)

func (f PackageForm) String() string {
	if f == FileDeltas {
		return "file-deltas"
	}
	return "whole-files"
}

// DeltaZstd names the encoding of delta members, as "prepcast apply"
// announces it in its greeting.
const DeltaZstd = "zstd-raw-dictionary/1"

// PAXDeltaBase is the PAX record of a delta member: the hex SHA-256 of the
// content the delta starts from.
const PAXDeltaBase = "PREPCAST.delta.base"

const (
	// MaxDeltaBase bounds the content a delta starts from, and the file
	// it brings: the reader holds both and the member (24 MiB at most,
	// which keeps "prepcast apply" under 64 MB), and the base fits in the
	// frame's window. A larger file travels whole.
	MaxDeltaBase = 8 << 20
	// MaxDeltaWindow bounds the window of a delta frame: the window
	// holds the base.
	MaxDeltaWindow = MaxDeltaBase
	// deltaDictID tags delta frames, so that a frame is never decoded
	// without its base.
	deltaDictID = 0x70637331
	// minDeltaFile: smaller files travel whole, compressed with their
	// neighbours in the stream, which costs less than a member of its own.
	minDeltaFile = 4 << 10
	// deltaMemberCost bounds what a delta member costs beyond a whole one
	// (its PAX record, compressed; two frame switches; the compression
	// context the next file loses), so a delta must save more than this.
	deltaMemberCost = 512
)

// deltaWindow returns the window of a delta against a base of n bytes:
// the least power of two from 1 MiB that holds the base, as the encoder
// finds matches only within its window.
func deltaWindow(n int) int {
	w := 1 << 20
	for w < n {
		w <<= 1
	}
	return w
}

// deltaEncoder encodes delta members of one package.
type deltaEncoder struct {
	plain *zstd.Encoder // the file compressed alone, as the stream would
}

func newDeltaEncoder() (*deltaEncoder, error) {
	plain, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, err
	}
	return &deltaEncoder{plain: plain}, nil
}

// encode returns the delta frame that decodes to content against base, or
// nil when the delta would not save a member's cost over content
// compressed alone.
func (d *deltaEncoder) encode(base, content []byte) ([]byte, error) {
	if len(base) == 0 || len(base) > MaxDeltaBase || len(content) > MaxDeltaBase {
		return nil, nil
	}
	delta, err := EncodeDelta(base, content)
	if err != nil {
		return nil, err
	}
	plain := d.plain.EncodeAll(content, nil)
	if len(delta)+deltaMemberCost >= len(plain) {
		return nil, nil
	}
	return delta, nil
}

// EncodeDelta returns the frame of a delta member that brings content to a
// holder of base (at most MaxDeltaBase bytes each).
func EncodeDelta(base, content []byte) ([]byte, error) {
	if len(base) > MaxDeltaBase || len(content) > MaxDeltaBase {
		return nil, fmt.Errorf("delta: %d and %d bytes, more than the %d a delta may hold", len(base), len(content), MaxDeltaBase)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(deltaWindow(len(base))), zstd.WithEncoderCRC(true), zstd.WithEncoderDictRaw(deltaDictID, base))
	if err != nil {
		return nil, fmt.Errorf("delta encoder: %w", err)
	}
	defer enc.Close()
	return enc.EncodeAll(content, nil), nil
}

// ErrBadDelta is wrapped by the errors of a [DeltaReader] whose member
// does not decode to exactly its file (with [ErrBadPackage]).
var ErrBadDelta = errors.New("delta member does not decode against its base")

// DeltaReader reads the file a delta member brings, decoded against its
// base whole before the first byte is read: it holds the member, the base
// and the file, each at most MaxDeltaBase bytes.
type DeltaReader struct{ bytes.Reader }

// NewDeltaReader reads a delta member of memberSize bytes from r and
// decodes it against base, refusing it unless it decodes to exactly size
// bytes (the file's size in the signed manifest); name names the member
// in errors. The caller must have checked base against the member's
// PAXDeltaBase and the origin's signed manifest, and checks the content
// against the file's SHA-256.
func NewDeltaReader(r io.Reader, memberSize, size int64, base []byte, name string) (*DeltaReader, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %w: member %s %s", ErrBadPackage, ErrBadDelta, name, fmt.Sprintf(format, a...))
	}
	switch {
	case memberSize >= size:
		return nil, bad("has %d bytes for a file of %d: a delta is always smaller than its file", memberSize, size)
	case len(base) > MaxDeltaBase || size > MaxDeltaBase:
		return nil, bad("starts from %d bytes or brings %d, more than the %d a delta may", len(base), size, MaxDeltaBase)
	}
	frame := make([]byte, memberSize)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, bad("cut short: %v", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxDeltaWindow),
		zstd.WithDecoderMaxMemory(uint64(size)), zstd.WithDecoderDictRaw(deltaDictID, base))
	if err != nil {
		return nil, bad("%v", err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(frame, make([]byte, 0, size))
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return nil, bad("decodes to more bytes than its file (%d)", size)
	case err != nil:
		return nil, bad("%v", err)
	case int64(len(out)) != size:
		return nil, bad("decodes to %d bytes, its file has %d", len(out), size)
	}
	d := &DeltaReader{}
	d.Reset(out)
	return d, nil
}

// MemberContent returns a reader of the content of file member th, read
// from r, that the manifest lists as e: the member itself, which must have
// the entry's size, or for a delta member its content decoded against
// what base returns for its path and PAXDeltaBase (base nil refuses delta
// members). Its own errors wrap [ErrBadPackage]; base's are returned as
// they are. The caller checks the content against e.SHA256.
func MemberContent(r io.Reader, th *tar.Header, e Entry, base func(path, sha string) ([]byte, error)) (io.Reader, error) {
	sha, isDelta := th.PAXRecords[PAXDeltaBase]
	switch {
	case !isDelta && th.Size != e.Size:
		return nil, fmt.Errorf("%w: member %q has %d bytes, the signed manifest says %d", ErrBadPackage, th.Name, th.Size, e.Size)
	case !isDelta:
		return r, nil
	case base == nil:
		return nil, fmt.Errorf("%w: member %q is a delta, and no base was given to decode it", ErrBadPackage, th.Name)
	case !IsSHA256Hex(sha):
		return nil, fmt.Errorf("%w: member %q is a delta from a malformed SHA-256 %q", ErrBadPackage, th.Name, sha)
	}
	b, err := base(e.Path, sha)
	if err != nil {
		return nil, err
	}
	return NewDeltaReader(r, th.Size, e.Size, b, th.Name)
}
