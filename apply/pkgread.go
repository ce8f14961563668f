package apply

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
)

// ErrBadPackage is wrapped by every error the package reader returns for a
// package that is malformed, larger than its signed manifest allows, or
// does not match it.
var ErrBadPackage = packager.ErrBadPackage

// Bounds of what the package reader holds in memory or reads.
const (
	// DefaultMaxManifest bounds a package's manifest (about 120,000
	// files); the manifest is held in memory to verify its signature.
	DefaultMaxManifest = 16 << 20
	// maxSignature bounds the signature member ("ed25519 " and 88 base64
	// characters).
	maxSignature = 128
	// maxHeaderLine bounds the first line of a canonical manifest, which
	// states how many entries follow.
	maxHeaderLine = 256 << 10
	// maxEntryLine bounds one entry line of a canonical manifest: a path
	// of safepath.MaxLen bytes, each escaped as \uXXXX at worst, its size
	// and SHA-256.
	maxEntryLine = 6*safepath.MaxLen + 128
	// perMemberOverhead bounds the package bytes a file member costs
	// besides its content: tar and PAX headers, padding, zstd framing.
	perMemberOverhead = 4 << 10
	// zstdWindow bounds the decoder's window (the packager writes 1 MiB).
	zstdWindow = 8 << 20
)

// verifyFunc checks the manifest and signature members and returns the
// parsed manifest, or an error that says why the package is refused.
type verifyFunc func(manifest, sig []byte) (*packager.Manifest, error)

// baseFunc returns the content a delta member of path starts from, which
// the member names by its SHA-256, checked against the signed manifest of
// the cut the difusor holds; nil refuses delta members.
type baseFunc func(path, sha string) ([]byte, error)

// memberFunc is called for each file member with the manifest entry it
// is and a reader of exactly its content. It must read r to the end; the
// content is checked against the entry's SHA-256 afterwards.
type memberFunc func(e packager.Entry, r io.Reader) error

// readPackage reads a package (zstd stream of a tar archive: manifest,
// signature, delta description, then file members) from r, holding at most
// maxManifest bytes of it in memory. It refuses, naming the member: a
// metadata member out of place or over its bound; a manifest whose stated
// entry count does not account for its size; a file member the signed
// manifest does not list, listed twice, of another size or content; a
// stream larger than the signed manifest allows; data after the archive; a
// delta member that base refuses or that does not decode to exactly its
// file against base's content. The delta description is not trusted for
// anything and is skipped. verify is called before any file member is read.
func readPackage(r io.Reader, maxManifest int64, verify verifyFunc, base baseFunc, file memberFunc) (*packager.Manifest, []byte, []byte, error) {
	// Until the manifest is verified, the stream may hold no more than
	// the metadata; afterwards no more than the manifest's files.
	raw := &boundedReader{r: r, n: 2*maxManifest + 1<<20}
	zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdWindow),
		zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(zstdWindow))
	if err != nil {
		return nil, nil, nil, err
	}
	defer zr.Close()
	fail := func(err error) (*packager.Manifest, []byte, []byte, error) {
		if raw.over {
			err = fmt.Errorf("%w: the package stream is larger than its signed manifest allows (%v)", ErrBadPackage, err)
		}
		return nil, nil, nil, err
	}
	tr := tar.NewReader(zr)
	next := func(name string, max int64) (*tar.Header, error) {
		h, err := tr.Next()
		if err != nil {
			return nil, bad("reading member %s: %v", name, err)
		}
		if h.Name != name || h.Typeflag != tar.TypeReg {
			return nil, bad("member %s where %s belongs", quote(h.Name), name)
		}
		if h.Size < 0 || h.Size > max {
			return nil, bad("member %s has %d bytes, more than the %d this difusor accepts", name, h.Size, max)
		}
		return h, nil
	}

	// The manifest: its first line states the number of entries, which
	// bounds the rest.
	h, err := next(packager.PkgManifest, maxManifest)
	if err != nil {
		return fail(err)
	}
	mb, err := readManifestMember(tr, h.Size)
	if err != nil {
		return fail(err)
	}
	if h, err = next(packager.PkgSignature, maxSignature); err != nil {
		return fail(err)
	}
	sig, err := io.ReadAll(io.LimitReader(tr, h.Size))
	if err != nil {
		return fail(bad("reading member %s: %v", packager.PkgSignature, err))
	}
	if h, err = next(packager.PkgDelta, maxManifest); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return fail(bad("reading member %s: %v", packager.PkgDelta, err))
	}
	m, err := verify(mb, sig)
	if err != nil {
		return fail(err)
	}
	raw.n = raw.read + m.Bytes + m.Bytes/64 + int64(len(m.Entries))*perMemberOverhead + 1<<20

	seen := make(map[string]bool)
	h256 := sha256.New()
	for {
		th, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(bad("reading member: %v", err))
		}
		name := quote(th.Name)
		if th.Typeflag != tar.TypeReg {
			return fail(bad("member %s is not a regular file", name))
		}
		if err := safepath.Check(th.Name); err != nil {
			return fail(bad("member %s: %s", name, termsafe.String(err.Error())))
		}
		e, ok := m.Lookup(th.Name)
		if !ok {
			return fail(bad("member %s is not a file of the signed cut", name))
		}
		if seen[e.Path] {
			return fail(bad("member %s appears twice", name))
		}
		seen[e.Path] = true
		src, err := packager.MemberContent(tr, th, e, base)
		if err != nil {
			return fail(err)
		}
		h256.Reset()
		tee := io.TeeReader(io.LimitReader(src, e.Size), h256)
		if file != nil {
			if err := file(e, tee); err != nil {
				return fail(err)
			}
		}
		if _, err := io.Copy(io.Discard, tee); err != nil {
			if errors.Is(err, ErrBadPackage) {
				return fail(err)
			}
			return fail(bad("reading member %s: %v", name, err))
		}
		if hex.EncodeToString(h256.Sum(nil)) != e.SHA256 {
			return fail(bad("content of member %s does not match the signed manifest's SHA-256", name))
		}
	}
	// Nothing may follow the archive in the stream.
	if n, err := io.Copy(io.Discard, zr); err != nil || n != 0 {
		return fail(bad("data after the end of the archive (%d bytes, %v)", n, err))
	}
	return m, mb, sig, nil
}

// readManifestMember reads the manifest member of size bytes from r,
// refusing it when the number of entries its first line states cannot
// account for its size: a manifest of n entries takes at most
// maxEntryLine bytes per entry.
func readManifestMember(r io.Reader, size int64) ([]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, size), 64<<10)
	var head []byte
	for {
		chunk, err := br.ReadSlice('\n')
		head = append(head, chunk...)
		if len(head) > maxHeaderLine {
			return nil, bad("member %s: first line longer than %d bytes", packager.PkgManifest, maxHeaderLine)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, bad("member %s: no header line (%v)", packager.PkgManifest, err)
		}
	}
	const tail = ",\"entries\":[\n"
	var hdr struct {
		Files int64 `json:"files"`
	}
	if !bytes.HasSuffix(head, []byte(tail)) {
		return nil, bad("member %s: not a canonical manifest", packager.PkgManifest)
	}
	obj := append(append([]byte{}, bytes.TrimSuffix(head, []byte(tail))...), '}')
	if err := json.Unmarshal(obj, &hdr); err != nil || hdr.Files < 0 {
		return nil, bad("member %s: header line unreadable", packager.PkgManifest)
	}
	if limit := int64(len(head)) + hdr.Files*maxEntryLine + 8; size > limit {
		return nil, bad("member %s has %d bytes, more than %d entries can take", packager.PkgManifest, size, hdr.Files)
	}
	buf := make([]byte, size)
	n := copy(buf, head)
	if _, err := io.ReadFull(br, buf[n:]); err != nil {
		return nil, bad("reading member %s: %v", packager.PkgManifest, err)
	}
	return buf, nil
}

func bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadPackage, fmt.Sprintf(format, a...))
}

// quote returns a name that came with the package, escaped and bounded.
func quote(s string) string { return `"` + termsafe.Clip(s, 200) + `"` }

// boundedReader reads at most n bytes of r; reading more is an error.
type boundedReader struct {
	r    io.Reader
	n    int64
	read int64
	over bool
}

var errStreamTooLarge = errors.New("stream over its bound")

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.read >= b.n {
		b.over = true
		return 0, errStreamTooLarge
	}
	if int64(len(p)) > b.n-b.read {
		p = p[:b.n-b.read]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}
