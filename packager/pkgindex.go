package packager

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
)

// A package is stored as a package index: the bytes of the package stream
// that are its own (zstd frames of the compressed files, tar headers,
// frame and block headers, the metadata members) followed by a table of
// pieces that says, in stream order, which stretch of the stream is such a
// byte run and which is a range of a stored object. Incompressible content
// (images) travels in raw zstd blocks, byte for byte, so it is never copied
// a second time: a package index costs a few kilobytes plus the compressed
// text, and the store holds every image once.
//
// Layout of an index file:
//
//	own bytes      the stream's own bytes, in stream order
//	table          pieces, in stream order: uvarint(n<<1 | kind); kind 1
//	               (object) is followed by the object's raw SHA-256 (32 bytes)
//	               and uvarint(offset in the object)
//	trailer        64 bytes: magic "PCPKIDX1", stream size, own bytes length,
//	               table length (big-endian uint64), SHA-256 of the stream
//
// [PackageReader] reproduces the stream; the trailer's SHA-256 is the
// package's, the one [CutInfo] records and `prepcast package` checks.
const (
	pkgIndexMagic   = "PCPKIDX1"
	pkgTrailerSize  = 8 + 3*8 + sha256.Size
	maxPkgIndexTbl  = 256 << 20
	pieceOwn        = 0
	pieceObject     = 1
	pkgIndexSuffix  = ".pkg"
	hashChunk       = 1 << 20
	hashChunksAhead = 4
)

// pkgOut receives a package stream as it is produced.
type pkgOut interface {
	// Write takes bytes of the stream that are its own.
	Write(p []byte) (int, error)
	// WriteObject takes bytes of the stream that are p, the content of
	// stored object sha starting at off.
	WriteObject(sha string, off int64, p []byte) error
}

// streamOut writes the whole stream to a writer, counting and hashing it.
type streamOut struct {
	bw *bufio.Writer
	h  hash.Hash
	n  int64
}

func newStreamOut(w io.Writer) *streamOut {
	h := sha256.New()
	return &streamOut{bw: bufio.NewWriterSize(io.MultiWriter(w, h), 256<<10), h: h}
}

func (s *streamOut) Write(p []byte) (int, error) {
	n, err := s.bw.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *streamOut) WriteObject(_ string, _ int64, p []byte) error {
	_, err := s.Write(p)
	return err
}

func (s *streamOut) finish() (PackageInfo, error) {
	if err := s.bw.Flush(); err != nil {
		return PackageInfo{}, err
	}
	return PackageInfo{Size: s.n, SHA256: hex.EncodeToString(s.h.Sum(nil))}, nil
}

// piece is a stretch of a package stream.
type piece struct {
	start int64 // offset in the stream
	n     int64
	obj   [32]byte // object SHA-256, for an object piece
	isObj bool
	off   int64 // offset in the object, or in the own bytes
}

// indexOut writes a package index. The stream's SHA-256 is computed on a
// goroutine of its own, beside the compression.
type indexOut struct {
	own    *bufio.Writer
	ownN   int64
	size   int64
	pieces []piece
	hash   *asyncHash
}

func newIndexOut(w io.Writer) *indexOut {
	return &indexOut{own: bufio.NewWriterSize(w, 256<<10), hash: newAsyncHash()}
}

func (x *indexOut) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := x.own.Write(p)
	if err != nil {
		return n, err
	}
	x.hash.Write(p)
	if k := len(x.pieces) - 1; k >= 0 && !x.pieces[k].isObj {
		x.pieces[k].n += int64(n)
	} else {
		x.pieces = append(x.pieces, piece{start: x.size, n: int64(n), off: x.ownN})
	}
	x.ownN += int64(n)
	x.size += int64(n)
	return n, nil
}

func (x *indexOut) WriteObject(sha string, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	var id [32]byte
	if b, err := hex.DecodeString(sha); err != nil || len(b) != len(id) {
		return fmt.Errorf("package: object %q: not a SHA-256", sha)
	} else {
		copy(id[:], b)
	}
	x.hash.Write(p)
	if k := len(x.pieces) - 1; k >= 0 && x.pieces[k].isObj && x.pieces[k].obj == id && x.pieces[k].off+x.pieces[k].n == off {
		x.pieces[k].n += int64(len(p))
	} else {
		x.pieces = append(x.pieces, piece{start: x.size, n: int64(len(p)), obj: id, isObj: true, off: off})
	}
	x.size += int64(len(p))
	return nil
}

// finish writes the table and the trailer.
func (x *indexOut) finish() (PackageInfo, error) {
	sum := x.hash.Sum()
	var tbl []byte
	for _, p := range x.pieces {
		if p.isObj {
			tbl = binary.AppendUvarint(tbl, uint64(p.n)<<1|pieceObject)
			tbl = append(tbl, p.obj[:]...)
			tbl = binary.AppendUvarint(tbl, uint64(p.off))
		} else {
			tbl = binary.AppendUvarint(tbl, uint64(p.n)<<1|pieceOwn)
		}
	}
	tr := make([]byte, 0, pkgTrailerSize)
	tr = append(tr, pkgIndexMagic...)
	tr = binary.BigEndian.AppendUint64(tr, uint64(x.size))
	tr = binary.BigEndian.AppendUint64(tr, uint64(x.ownN))
	tr = binary.BigEndian.AppendUint64(tr, uint64(len(tbl)))
	tr = append(tr, sum...)
	if _, err := x.own.Write(tbl); err != nil {
		return PackageInfo{}, err
	}
	if _, err := x.own.Write(tr); err != nil {
		return PackageInfo{}, err
	}
	if err := x.own.Flush(); err != nil {
		return PackageInfo{}, err
	}
	return PackageInfo{Size: x.size, SHA256: hex.EncodeToString(sum)}, nil
}

// asyncHash computes a SHA-256 on its own goroutine from copies of what it
// is given, so hashing overlaps the work that produces the bytes.
type asyncHash struct {
	cur  []byte
	ch   chan []byte // full chunks to hash
	free chan []byte // hashed chunks to reuse
	done chan []byte
}

func newAsyncHash() *asyncHash {
	a := &asyncHash{ch: make(chan []byte, hashChunksAhead), free: make(chan []byte, hashChunksAhead+2), done: make(chan []byte, 1)}
	go func() {
		h := sha256.New()
		for b := range a.ch {
			h.Write(b)
			a.free <- b[:0]
		}
		a.done <- h.Sum(nil)
	}()
	return a
}

func (a *asyncHash) Write(p []byte) {
	for len(p) > 0 {
		if a.cur == nil {
			select {
			case a.cur = <-a.free:
			default:
				a.cur = make([]byte, 0, hashChunk)
			}
		}
		c := min(len(p), cap(a.cur)-len(a.cur))
		a.cur = append(a.cur, p[:c]...)
		p = p[c:]
		if len(a.cur) == cap(a.cur) {
			a.ch <- a.cur
			a.cur = nil
		}
	}
}

// Sum returns the hash of everything written; the asyncHash is done.
func (a *asyncHash) Sum() []byte {
	if len(a.cur) > 0 {
		a.ch <- a.cur
	}
	a.cur = nil
	close(a.ch)
	return <-a.done
}

// abort stops the hashing goroutine without a result.
func (a *asyncHash) abort() {
	if a.ch != nil {
		close(a.ch)
		<-a.done
		a.ch = nil
	}
}

// ErrBadPackageIndex means a stored package index is damaged; the package
// must be discarded and built again.
var ErrBadPackageIndex = errors.New("damaged package index")

// PackageReader reproduces a stored package stream from its index and the
// objects it names; it is not safe for concurrent use. A read of an
// object that is missing or shorter than the index says fails with an error
// (the cut was pruned meanwhile, or the store is damaged); the reader does
// not check the stream's SHA-256, the difusor checks every file.
type PackageReader struct {
	s      *Store
	f      *os.File
	info   PackageInfo
	pieces []piece
	off    int64 // for Read

	obj  [32]byte // the object open in objF
	objF *os.File
}

// openPackageIndex opens the package index at path.
func (s *Store) openPackageIndex(path string) (*PackageReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := readPackageIndex(s, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w %s: %w", ErrBadPackageIndex, path, err)
	}
	return r, nil
}

func readPackageIndex(s *Store, f *os.File) (*PackageReader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	info, pieces, err := parsePackageIndex(f, fi.Size())
	if err != nil {
		return nil, err
	}
	return &PackageReader{s: s, f: f, info: info, pieces: pieces}, nil
}

// parsePackageIndex reads the trailer and the table of an index of n bytes
// and checks that they describe a stream consistently.
func parsePackageIndex(f io.ReaderAt, n int64) (PackageInfo, []piece, error) {
	var info PackageInfo
	if n < pkgTrailerSize {
		return info, nil, errors.New("too short")
	}
	tr := make([]byte, pkgTrailerSize)
	if _, err := f.ReadAt(tr, n-pkgTrailerSize); err != nil {
		return info, nil, err
	}
	if string(tr[:8]) != pkgIndexMagic {
		return info, nil, errors.New("no package index trailer")
	}
	size := binary.BigEndian.Uint64(tr[8:])
	ownN := binary.BigEndian.Uint64(tr[16:])
	tblN := binary.BigEndian.Uint64(tr[24:])
	if size > 1<<62 || ownN > uint64(n) || tblN > maxPkgIndexTbl || ownN+tblN+pkgTrailerSize != uint64(n) {
		return info, nil, errors.New("lengths do not add up")
	}
	tbl := make([]byte, tblN)
	if _, err := f.ReadAt(tbl, int64(ownN)); err != nil {
		return info, nil, err
	}
	var pieces []piece
	var pos, own int64
	for len(tbl) > 0 {
		v, k := binary.Uvarint(tbl)
		if k <= 0 || v>>1 == 0 || v>>1 > size-uint64(pos) {
			return info, nil, errors.New("bad table")
		}
		tbl = tbl[k:]
		p := piece{start: pos, n: int64(v >> 1)}
		if v&1 == pieceObject {
			if len(tbl) < 32 {
				return info, nil, errors.New("bad table")
			}
			copy(p.obj[:], tbl)
			p.isObj = true
			o, k := binary.Uvarint(tbl[32:])
			if k <= 0 || o > 1<<62 {
				return info, nil, errors.New("bad table")
			}
			p.off = int64(o)
			tbl = tbl[32+k:]
		} else {
			p.off = own
			own += p.n
		}
		pieces = append(pieces, p)
		pos += p.n
	}
	if uint64(pos) != size || uint64(own) != ownN {
		return info, nil, errors.New("pieces do not add up to the stream")
	}
	return PackageInfo{Size: int64(size), SHA256: hex.EncodeToString(tr[32:])}, pieces, nil
}

// Size is the length of the package stream.
func (r *PackageReader) Size() int64 { return r.info.Size }

// Info is the package's size and SHA-256, as recorded when it was built.
func (r *PackageReader) Info() PackageInfo { return r.info }

// ReadAt reads the stream at off.
func (r *PackageReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("package: negative offset")
	}
	n := 0
	for len(p) > 0 {
		if off >= r.info.Size {
			return n, io.EOF
		}
		i := sort.Search(len(r.pieces), func(i int) bool { return r.pieces[i].start+r.pieces[i].n > off }) // first piece ending after off
		pc := r.pieces[i]
		in := off - pc.start
		c := int(min(int64(len(p)), pc.n-in))
		var err error
		if pc.isObj {
			err = r.readObject(pc.obj, p[:c], pc.off+in)
		} else {
			_, err = r.f.ReadAt(p[:c], pc.off+in)
		}
		if err != nil {
			return n, err
		}
		n += c
		off += int64(c)
		p = p[c:]
	}
	return n, nil
}

func (r *PackageReader) readObject(id [32]byte, p []byte, off int64) error {
	if r.objF == nil || r.obj != id {
		if r.objF != nil {
			r.objF.Close()
			r.objF = nil
		}
		f, err := r.s.OpenObject(hex.EncodeToString(id[:]))
		if err != nil {
			return fmt.Errorf("package: %w (pruned while the package was read, or the store is damaged)", err)
		}
		r.obj, r.objF = id, f
	}
	if _, err := r.objF.ReadAt(p, off); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("package: object %x is shorter than its package says: %w", id, ErrCorruptObject)
		}
		return err
	}
	return nil
}

// Read reads the stream in order.
func (r *PackageReader) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Close closes the index and the objects it opened.
func (r *PackageReader) Close() error {
	if r.objF != nil {
		r.objF.Close()
		r.objF = nil
	}
	return r.f.Close()
}
