package packager

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// segWriter writes one zstd stream made of consecutive frames: runs of
// compressible data go through a zstd encoder, runs of incompressible data
// go into frames of raw blocks that cost no compression work. Any zstd
// decoder reads the result as one stream. Bytes of a raw run written
// between beginObject and endObject reach the output as object content
// ([pkgOut.WriteObject]), so a package index can refer to them.
type segWriter struct {
	w      pkgOut
	enc    *zstd.Encoder
	raw    bool // the current run is raw
	inEnc  bool // the encoder has an open frame
	inRaw  bool // a raw frame header was written
	rawBuf []byte
	spans  []span // what rawBuf holds, in order

	obj    string // object whose content is being written, "" if none
	objOff int64
}

// span is a stretch of a raw block: the stream's own bytes, or content of
// object obj at off.
type span struct {
	n   int
	obj string
	off int64
}

const rawBlockMax = 128 << 10 // zstd's Block_Maximum_Size

func newSegWriter(w pkgOut, level zstd.EncoderLevel) (*segWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, err
	}
	return &segWriter{w: w, enc: enc, rawBuf: make([]byte, 0, rawBlockMax)}, nil
}

// setRaw switches between compressed and raw runs, closing the current frame.
func (s *segWriter) setRaw(raw bool) error {
	if raw == s.raw {
		return nil
	}
	if err := s.endFrame(); err != nil {
		return err
	}
	s.raw = raw
	return nil
}

func (s *segWriter) Write(p []byte) (int, error) {
	if !s.raw {
		if !s.inEnc {
			s.enc.Reset(s.w)
			s.inEnc = true
		}
		return s.enc.Write(p)
	}
	n := 0
	for len(p) > 0 {
		if len(s.rawBuf) == rawBlockMax {
			// More data follows, so this block is not the last one.
			if err := s.writeRawBlock(false); err != nil {
				return n, err
			}
		}
		c := copy(s.rawBuf[len(s.rawBuf):rawBlockMax], p)
		s.rawBuf = s.rawBuf[:len(s.rawBuf)+c]
		s.addSpan(c)
		p = p[c:]
		n += c
	}
	return n, nil
}

func (s *segWriter) addSpan(c int) {
	if k := len(s.spans) - 1; k >= 0 && s.spans[k].obj == s.obj && (s.obj == "" || s.spans[k].off+int64(s.spans[k].n) == s.objOff) {
		s.spans[k].n += c
	} else {
		s.spans = append(s.spans, span{n: c, obj: s.obj, off: s.objOff})
	}
	if s.obj != "" {
		s.objOff += int64(c)
	}
}

// beginObject marks what is written next, up to endObject, as the content
// of object sha from its start. It only matters in a raw run.
func (s *segWriter) beginObject(sha string) { s.obj, s.objOff = sha, 0 }

// endObject ends what beginObject began.
func (s *segWriter) endObject() { s.obj, s.objOff = "", 0 }

// rawFrameHeader is a zstd frame header: magic, a descriptor with no content
// size, no checksum and no dictionary, and a 128 KiB window (log 17).
var rawFrameHeader = []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3}

func (s *segWriter) writeRawBlock(last bool) error {
	if !s.inRaw {
		if _, err := s.w.Write(rawFrameHeader); err != nil {
			return err
		}
		s.inRaw = true
	}
	var hdr [4]byte
	v := uint32(len(s.rawBuf)) << 3 // block type 0 (raw) in bits 1-2
	if last {
		v |= 1
	}
	binary.LittleEndian.PutUint32(hdr[:], v)
	if _, err := s.w.Write(hdr[:3]); err != nil {
		return err
	}
	b := s.rawBuf
	for _, sp := range s.spans {
		var err error
		if sp.obj == "" {
			_, err = s.w.Write(b[:sp.n])
		} else {
			err = s.w.WriteObject(sp.obj, sp.off, b[:sp.n])
		}
		if err != nil {
			return err
		}
		b = b[sp.n:]
	}
	s.rawBuf, s.spans = s.rawBuf[:0], s.spans[:0]
	return nil
}

// endFrame finishes the open frame, if any.
func (s *segWriter) endFrame() error {
	if s.inEnc {
		s.inEnc = false
		if err := s.enc.Close(); err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
	}
	if s.raw && (s.inRaw || len(s.rawBuf) > 0) {
		if err := s.writeRawBlock(true); err != nil {
			return err
		}
		s.inRaw = false
	}
	return nil
}

// Close finishes the stream; it does not close the underlying writer.
func (s *segWriter) Close() error {
	err := s.endFrame()
	s.enc.Reset(nil)
	return err
}
