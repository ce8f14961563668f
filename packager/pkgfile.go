package packager

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/prepcast/prepcast/internal/safepath"
)

// Names of the metadata members at the start of every package, in order.
const (
	PkgManifest  = safepath.Reserved + "/manifest.json"
	PkgSignature = safepath.Reserved + "/manifest.sig"
	PkgDelta     = safepath.Reserved + "/delta.json"
)

// DeltaFormat is the format tag of a package's delta description.
const DeltaFormat = "prepcast-delta/1"

// DeltaInfo describes the delta a package carries.
type DeltaInfo struct {
	Format       string   `json:"format"`
	FromSeq      int64    `json:"from_seq"`      // 0 when the package starts from nothing
	FromManifest string   `json:"from_manifest"` // hex SHA-256, "" when FromSeq is 0
	ToSeq        int64    `json:"to_seq"`
	ToManifest   string   `json:"to_manifest"`
	Files        int      `json:"files"` // file members that follow
	Bytes        int64    `json:"bytes"` // their total size
	Deleted      []string `json:"deleted"`
}

// PackageInfo describes a written package file.
type PackageInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// incompressible lists file name extensions whose content is already
// compressed; they go into raw zstd blocks.
var incompressible = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".webp": true,
	".zip": true, ".gz": true, ".tgz": true, ".zst": true, ".xz": true,
	".bz2": true, ".7z": true, ".mp4": true, ".pdf": true, ".woff": true, ".woff2": true,
}

// Compressible reports whether a file's content is worth compressing,
// judged by its name.
func Compressible(name string) bool {
	return !incompressible[strings.ToLower(path.Ext(name))]
}

// packageOrder returns the changed entries in the order a package holds
// them: every non-pointer file by path, then the pointers in manifest order.
func packageOrder(d *Delta) []Entry {
	out := make([]Entry, 0, len(d.Changed))
	var ptrs []Entry
	for _, e := range d.Changed {
		if d.To.IsPointer(e.Path) {
			continue
		}
		out = append(out, e)
	}
	for _, p := range d.To.Pointers {
		for _, e := range d.Changed {
			if e.Path == p {
				ptrs = append(ptrs, e)
			}
		}
	}
	return append(out, ptrs...)
}

// WritePackage writes the package for delta d to w, in form f: a zstd
// stream of a tar archive whose first members are the target manifest, its
// signature and the delta description, followed by every changed file
// (pointers last). open returns the content of an entry (of d.To, and for
// deltas of d.From); WritePackage checks that it has the entry's size and
// SHA-256, so a package never carries bytes its manifest does not vouch
// for, nor a delta against content the origin's manifest does not list.
func WritePackage(w io.Writer, d *Delta, f PackageForm, manifest, sig []byte, open func(Entry) (io.ReadCloser, error)) (PackageInfo, error) {
	out := newStreamOut(w)
	if err := writePackage(out, d, f, manifest, sig, open); err != nil {
		return PackageInfo{}, err
	}
	return out.finish()
}

// writePackage writes the package stream for d to out; the content of
// every incompressible file goes out as object content.
func writePackage(out pkgOut, d *Delta, f PackageForm, manifest, sig []byte, open func(Entry) (io.ReadCloser, error)) error {
	var from string
	var fromSeq int64
	if d.From != nil {
		fenc, err := d.From.Encode()
		if err != nil {
			return err
		}
		from, fromSeq = Hash(fenc), d.From.Seq
	}
	di := DeltaInfo{
		Format: DeltaFormat, FromSeq: fromSeq, FromManifest: from, ToSeq: d.To.Seq, ToManifest: Hash(manifest),
		Files: len(d.Changed), Bytes: d.Bytes(), Deleted: nonNil(d.Deleted),
	}
	dj, err := marshal(di)
	if err != nil {
		return err
	}

	seg, err := newSegWriter(out, zstd.SpeedDefault)
	if err != nil {
		return err
	}
	var denc *deltaEncoder
	if f == FileDeltas && d.From != nil {
		if denc, err = newDeltaEncoder(); err != nil {
			return err
		}
	}
	tw := tar.NewWriter(seg)
	mtime := d.To.Created
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}
	}
	for _, m := range []struct {
		name string
		data []byte
	}{{PkgManifest, manifest}, {PkgSignature, sig}, {PkgDelta, dj}} {
		if err := tw.WriteHeader(hdr(m.name, int64(len(m.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(m.data); err != nil {
			return err
		}
	}
	buf := make([]byte, 256<<10)
	for _, e := range packageOrder(d) {
		if denc != nil {
			done, err := writeDeltaMember(seg, tw, hdr, denc, d.From, e, open)
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		raw := !Compressible(e.Path)
		if err := seg.setRaw(raw); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr(e.Path, e.Size)); err != nil {
			return err
		}
		if raw {
			seg.beginObject(e.SHA256)
		}
		err := copyVerified(tw, e, open, buf)
		seg.endObject()
		if err != nil {
			return err
		}
	}
	if err := seg.setRaw(false); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return seg.Close()
}

// writeDeltaMember writes e as a delta member against the content the
// origin manifest from lists at its path, and reports whether it did: not
// when e is incompressible, out of a delta's bounds, new at its path, or
// its delta would not be smaller. Both contents are checked against their
// SHA-256 as they are read.
func writeDeltaMember(seg *segWriter, tw *tar.Writer, hdr func(string, int64) *tar.Header, denc *deltaEncoder, from *Manifest, e Entry, open func(Entry) (io.ReadCloser, error)) (bool, error) {
	fe, ok := from.Lookup(e.Path)
	if !ok || !Compressible(e.Path) || e.Size < minDeltaFile || e.Size > MaxDeltaBase || fe.Size == 0 || fe.Size > MaxDeltaBase {
		return false, nil
	}
	var base, content bytes.Buffer
	base.Grow(int(fe.Size))
	content.Grow(int(e.Size))
	if err := copyVerified(&base, fe, open, nil); err != nil {
		return false, fmt.Errorf("delta base: %w", err)
	}
	if err := copyVerified(&content, e, open, nil); err != nil {
		return false, err
	}
	delta, err := denc.encode(base.Bytes(), content.Bytes())
	if err != nil {
		return false, fmt.Errorf("package %s: %w", e.Path, err)
	}
	// The header goes in the compressed run, the frame (compressed
	// already) in a raw one; a file whose delta does not pay goes whole
	// from memory.
	if err := seg.setRaw(false); err != nil {
		return false, err
	}
	h := hdr(e.Path, e.Size)
	body := content.Bytes()
	if delta != nil {
		h.Size, body = int64(len(delta)), delta
		h.PAXRecords = map[string]string{PAXDeltaBase: fe.SHA256}
	}
	if err := tw.WriteHeader(h); err != nil {
		return false, err
	}
	if delta != nil {
		if err := seg.setRaw(true); err != nil {
			return false, err
		}
	}
	if _, err := tw.Write(body); err != nil {
		return false, err
	}
	return true, nil
}

func copyVerified(w io.Writer, e Entry, open func(Entry) (io.ReadCloser, error), buf []byte) error {
	r, err := open(e)
	if err != nil {
		return fmt.Errorf("package %s: %w", e.Path, err)
	}
	defer r.Close()
	if _, ok := r.(verifiedContent); ok {
		n, err := io.CopyBuffer(w, io.LimitReader(r, e.Size), buf)
		if err == nil && n != e.Size {
			err = ErrCorruptObject
		}
		if err != nil {
			return fmt.Errorf("package %s: %w", e.Path, err)
		}
		return nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(r, e.Size), buf)
	if err != nil {
		return fmt.Errorf("package %s: %w", e.Path, err)
	}
	if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return fmt.Errorf("package %s: %w", e.Path, ErrCorruptObject)
	}
	return nil
}

// verifiedContent marks a reader whose bytes were hashed moments ago by the
// same process (content just stored by a cut), so [WritePackage] does not
// hash them again; only their length is checked.
type verifiedContent interface {
	io.ReadCloser
	contentVerified()
}

// justStored is an object that this process hashed while storing it.
type justStored struct{ *os.File }

func (justStored) contentVerified() {}

// ErrCorruptObject means stored content no longer matches the hash it is
// stored under.
var ErrCorruptObject = errors.New("stored content does not match its SHA-256 (corrupt object in the store)")

// PackageContent is what [ReadPackage] learned from a package's metadata.
type PackageContent struct {
	Manifest      *Manifest
	ManifestBytes []byte
	Signature     []byte
	Delta         DeltaInfo
}

// ErrBadPackage is wrapped by every error [ReadPackage] returns for a
// package that is malformed or does not match its manifest.
var ErrBadPackage = errors.New("bad package")

// maxMetaMember bounds the metadata members of a package.
const maxMetaMember = MaxManifestSize

// ReadPackage reads a package from r and checks it as it goes: the manifest
// must verify with pub, the delta must name that manifest, and every file
// member must be an entry of the manifest, listed once, with the entry's
// size (or, for a delta member, decoding to it against the content base
// returns for its path and PAXDeltaBase; base nil refuses delta members).
// meta is called once after the metadata; file is called for each file
// member with a reader of its content, in package order. file must read r
// to the end; if the content then does not match the entry's SHA-256,
// ReadPackage returns an error wrapping [ErrBadPackage] and the caller must
// discard what it wrote for that entry. ReadPackage never trusts a path: all
// pass safepath.Check and name manifest entries.
func ReadPackage(r io.Reader, pub ed25519.PublicKey, base func(path, sha string) ([]byte, error), meta func(*PackageContent) error, file func(e Entry, r io.Reader) error) (*PackageContent, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadPackage, fmt.Sprintf(format, a...))
	}
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	readMeta := func(name string) ([]byte, error) {
		h, err := tr.Next()
		if err != nil {
			return nil, bad("reading %s: %v", name, err)
		}
		if h.Name != name || h.Typeflag != tar.TypeReg {
			return nil, bad("member %q where %s belongs", h.Name, name)
		}
		if h.Size < 0 || h.Size > maxMetaMember {
			return nil, bad("%s has size %d", name, h.Size)
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, bad("reading %s: %v", name, err)
		}
		return b, nil
	}
	pc := &PackageContent{}
	if pc.ManifestBytes, err = readMeta(PkgManifest); err != nil {
		return nil, err
	}
	if pc.Signature, err = readMeta(PkgSignature); err != nil {
		return nil, err
	}
	dj, err := readMeta(PkgDelta)
	if err != nil {
		return nil, err
	}
	if err := Verify(pub, pc.ManifestBytes, pc.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPackage, err)
	}
	if pc.Manifest, err = ParseManifest(pc.ManifestBytes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPackage, err)
	}
	dec := json.NewDecoder(bytes.NewReader(dj))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pc.Delta); err != nil {
		return nil, bad("delta: %v", err)
	}
	d := pc.Delta
	if d.Format != DeltaFormat || d.ToSeq != pc.Manifest.Seq || d.ToManifest != Hash(pc.ManifestBytes) {
		return nil, bad("delta does not describe the package's manifest")
	}
	if d.FromSeq < 0 || d.FromSeq >= d.ToSeq || (d.FromSeq == 0) != (d.FromManifest == "") || (d.FromManifest != "" && !IsSHA256Hex(d.FromManifest)) {
		return nil, bad("delta has a malformed origin (from_seq %d)", d.FromSeq)
	}
	for _, p := range d.Deleted {
		if err := safepath.Check(p); err != nil {
			return nil, fmt.Errorf("%w: deleted path: %w", ErrBadPackage, err)
		}
		if _, ok := pc.Manifest.Lookup(p); ok {
			return nil, bad("deleted path %q is a file of the cut", p)
		}
	}
	if meta != nil {
		if err := meta(pc); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]bool, d.Files)
	var total int64
	var h hash.Hash = sha256.New()
	for {
		th, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bad("reading member: %v", err)
		}
		if th.Typeflag != tar.TypeReg {
			return nil, bad("member %q is not a regular file", th.Name)
		}
		if err := safepath.Check(th.Name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadPackage, err)
		}
		e, ok := pc.Manifest.Lookup(th.Name)
		if !ok {
			return nil, bad("member %q is not a file of the cut", th.Name)
		}
		if seen[e.Path] {
			return nil, bad("member %q appears twice", th.Name)
		}
		seen[e.Path] = true
		src, err := MemberContent(tr, th, e, base)
		if err != nil {
			return nil, err
		}
		h.Reset()
		tee := io.TeeReader(io.LimitReader(src, e.Size), h)
		if file != nil {
			if err := file(e, tee); err != nil {
				return nil, err
			}
		}
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return nil, bad("reading %q: %v", th.Name, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			return nil, bad("content of %q does not match the manifest's SHA-256", th.Name)
		}
		total += e.Size
	}
	if len(seen) != d.Files || total != d.Bytes {
		return nil, bad("package holds %d files (%d bytes), its delta says %d (%d bytes)", len(seen), total, d.Files, d.Bytes)
	}
	return pc, nil
}

// PackageName returns the file name of the package index of form f from
// cut fromSeq (0 = nothing) to the cut whose directory holds it. A package
// from nothing has no deltas, whatever f.
func PackageName(fromSeq int64, f PackageForm) string {
	if f == FileDeltas && fromSeq != 0 {
		return fmt.Sprintf("from-%06d-deltas"+pkgIndexSuffix, fromSeq)
	}
	return fmt.Sprintf("from-%06d"+pkgIndexSuffix, fromSeq)
}
