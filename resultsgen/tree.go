package resultsgen

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prepcast/prepcast/internal/atomicfile"
	"golang.org/x/sync/errgroup"
)

// minImageSize is the smallest acta image: the JPEG/JFIF header, the end
// marker and some payload.
const minImageSize = 64

// jpegHeader is SOI followed by a JFIF 1.01 APP0 segment; jpegTrailer is EOI.
var (
	jpegHeader  = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}
	jpegTrailer = []byte{0xFF, 0xD9}
)

// imageBufSize is the chunk in which image bytes are generated and written;
// a writer never holds more than this of an image.
const imageBufSize = 256 << 10

var imageBufs = sync.Pool{New: func() any { b := make([]byte, imageBufSize); return &b }}

// writeImage streams the image img: the JPEG header, pseudo-random bytes from
// ChaCha8 seeded with img.seed (incompressible), and the JPEG end marker.
func writeImage(w io.Writer, img imageFile, buf []byte) error {
	if _, err := w.Write(jpegHeader); err != nil {
		return err
	}
	rng := rand.NewChaCha8(img.seed)
	for left := img.size - int64(len(jpegHeader)+len(jpegTrailer)); left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		_, _ = rng.Read(chunk) // never fails
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		left -= int64(len(chunk))
	}
	_, err := w.Write(jpegTrailer)
	return err
}

// entry is a file found in the tree before a cut is written.
type entry struct {
	size    int64
	regular bool
}

// inventory lists the files and directories under the generator's own
// directories of root, by slash path relative to root.
func inventory(root string) (map[string]entry, []string, error) {
	files := map[string]entry{}
	var dirs []string
	for _, top := range ownedDirs {
		info, err := os.Lstat(filepath.Join(root, top))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", top, err)
		}
		if !info.IsDir() {
			return nil, nil, fmt.Errorf("scan %s: not a directory; the generator owns %s/ and needs a real directory there", top, top)
		}
		err = filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				dirs = append(dirs, rel)
				return nil
			}
			e := entry{size: -1}
			if d.Type().IsRegular() {
				info, err := d.Info()
				if err != nil {
					return err
				}
				e = entry{size: info.Size(), regular: true}
			}
			files[rel] = e
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", top, err)
		}
	}
	return files, dirs, nil
}

// writeAtomic creates dst with the bytes fill writes, through a temporary
// file in dst's directory renamed over dst. It returns the bytes written.
func writeAtomic(dst string, fill func(io.Writer) error) (int64, error) {
	var n int64
	err := atomicfile.Write(dst, 0o644, false, func(w io.Writer) error {
		cw := &countWriter{w: w}
		err := fill(cw)
		n = cw.n
		return err
	})
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// sameContent reports whether the regular file at full already holds data.
func sameContent(full string, have entry, data []byte) bool {
	if !have.regular || have.size != int64(len(data)) {
		return false
	}
	old, err := os.ReadFile(full)
	return err == nil && bytes.Equal(old, data)
}

// sync brings the tree at root to plan p; see WriteCutContext.
func (n *Night) sync(ctx context.Context, root string, p *plan) (Stats, error) {
	var st Stats
	if err := os.MkdirAll(root, 0o755); err != nil {
		return st, err
	}
	have, dirs, err := inventory(root)
	if err != nil {
		return st, err
	}
	want := make(map[string]bool, len(p.files)+len(p.images))
	needDirs := map[string]bool{}
	for _, f := range p.files {
		want[f.path] = true
		needDirs[path.Dir(f.path)] = true
		st.Bytes += int64(len(f.data))
	}
	for _, img := range p.images {
		want[img.path] = true
		needDirs[path.Dir(img.path)] = true
		st.Bytes += img.size
	}
	st.Files = len(want)
	for _, d := range slices.Sorted(maps.Keys(needDirs)) {
		if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(d)), 0o755); err != nil {
			return st, err
		}
	}

	var written, writtenBytes atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n.opts.Workers)
	for _, img := range p.images {
		if e, ok := have[img.path]; ok && e.regular && e.size == img.size {
			continue
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			bp := imageBufs.Get().(*[]byte)
			defer imageBufs.Put(bp)
			nb, err := writeAtomic(filepath.Join(root, filepath.FromSlash(img.path)), func(w io.Writer) error {
				return writeImage(w, img, *bp)
			})
			if err != nil {
				return err
			}
			written.Add(1)
			writtenBytes.Add(nb)
			return nil
		})
	}
	err = g.Wait()
	st.Written, st.WrittenBytes = int(written.Load()), writtenBytes.Load()
	if err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}

	// Small files in plan order: CSVs, zip, the cut's JSON directory, and
	// json/main.json last.
	for _, f := range p.files {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		full := filepath.Join(root, filepath.FromSlash(f.path))
		if sameContent(full, have[f.path], f.data) {
			continue
		}
		nb, err := writeAtomic(full, func(w io.Writer) error {
			_, err := w.Write(f.data)
			return err
		})
		if err != nil {
			return st, err
		}
		st.Written++
		st.WrittenBytes += nb
	}

	if n.pointerWritten != nil {
		n.pointerWritten()
	}
	// Only now, with the pointer switched, remove what left the tree: the
	// previous cut's zip and JSON directory among others.
	for _, rel := range slices.Sorted(maps.Keys(have)) {
		if want[rel] {
			continue
		}
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(rel))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return st, fmt.Errorf("remove %s: %w", rel, err)
		}
		st.Removed++
	}
	// Best effort: drop directories left empty (e.g. an election no longer
	// generated). A directory that still holds something stays.
	slices.SortFunc(dirs, func(a, b string) int {
		return cmp.Compare(strings.Count(b, "/"), strings.Count(a, "/"))
	})
	for _, d := range dirs {
		if !needDirs[d] && !slices.Contains(ownedDirs, d) && !isParentOfAny(d, needDirs) {
			_ = os.Remove(filepath.Join(root, filepath.FromSlash(d)))
		}
	}
	return st, nil
}

func isParentOfAny(d string, dirs map[string]bool) bool {
	for x := range dirs {
		if strings.HasPrefix(x, d+"/") {
			return true
		}
	}
	return false
}
