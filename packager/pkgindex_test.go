package packager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"os"
	"strings"
	"testing"
)

// indexEnv makes two cuts whose delta holds two images larger than a raw
// block (one of them twice, under two names), an empty image, a CSV and
// the pointer.
func indexEnv(t *testing.T) (*cutEnv, map[string][]byte) {
	t.Helper()
	e := newCutEnv(t)
	rng := mrand.New(mrand.NewPCG(3, 4))
	img := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(`{"c":1}`), "actas/0.jpg": img(1000)})
	e.cut()
	a, b := img(300<<10+17), img(129<<10)
	tree := map[string][]byte{
		"json/main.json":         []byte(`{"c":2}`),
		"actas/0.jpg":            img(1000),
		"actas/GUB/1.jpg":        a,
		"actas/GUB/1-copia.jpeg": a,
		"actas/PRES/2.jpg":       b,
		"actas/PRES/vacia.jpg":   {},
		"datos/PUE_GUB_2024.csv": []byte(strings.Repeat("\ufeff'210423B0100,SIN DATO,12,34\n", 3000)),
	}
	os.RemoveAll(e.src)
	writeTree(t, e.src, tree)
	e.cut()
	return e, tree
}

func TestPackageIndexReproducesTheStream(t *testing.T) {
	e, tree := indexEnv(t)
	ci, _ := e.store.Info(2)
	got := readStream(t, e.store, 1, 2)

	// The same stream WritePackage writes in full, and the SHA-256 and size
	// cut.json records.
	m1, _, _ := e.store.Manifest(1)
	m2, mb, _ := e.store.Manifest(2)
	sig, _ := e.store.Signature(2)
	var want bytes.Buffer
	if _, err := WritePackage(&want, ComputeDelta(m1, m2), FileDeltas, mb, sig, func(ent Entry) (io.ReadCloser, error) {
		return e.store.OpenObject(ent.SHA256)
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("index gives %d bytes that differ from the %d-byte package", len(got), want.Len())
	}
	sum := sha256.Sum256(got)
	if ci.PackageSize != int64(len(got)) || ci.PackageSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("cut.json says %d bytes, %s; the stream has %d, %x", ci.PackageSize, ci.PackageSHA256, len(got), sum)
	}

	// The images are not copied: the index holds the compressed text and
	// headers only.
	fi, err := os.Stat(e.store.PackagePath(ci))
	if err != nil {
		t.Fatal(err)
	}
	images := int64(2*len(tree["actas/GUB/1.jpg"]) + len(tree["actas/PRES/2.jpg"]) + len(tree["actas/0.jpg"]))
	if fi.Size() > int64(len(got))-images+4096 {
		t.Fatalf("index is %d bytes for a %d-byte stream carrying %d bytes of images", fi.Size(), len(got), images)
	}

	// Reads at any offset give the stream's bytes.
	r, err := e.store.OpenPackage(1, 2, FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := mrand.New(mrand.NewPCG(5, 6))
	for range 300 {
		off := rng.Int64N(int64(len(got)))
		buf := make([]byte, rng.IntN(200<<10)+1)
		n, err := r.ReadAt(buf, off)
		if want := min(len(buf), len(got)-int(off)); n != want || (err != nil && !(err == io.EOF && n < len(buf))) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v; want %d", len(buf), off, n, err, want)
		}
		if !bytes.Equal(buf[:n], got[off:int(off)+n]) {
			t.Fatalf("ReadAt(%d bytes, %d) differs from the stream", len(buf), off)
		}
	}
	if n, err := r.ReadAt(make([]byte, 1), int64(len(got))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v", n, err)
	}
}

func TestDamagedPackageIndexIsBuiltAgain(t *testing.T) {
	e, _ := indexEnv(t)
	ci, _ := e.store.Info(2)
	want := readStream(t, e.store, 1, 2)
	p := e.store.PackagePath(ci)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"truncated":       func(b []byte) []byte { return b[:len(b)-10] },
		"empty":           func([]byte) []byte { return nil },
		"magic":           func(b []byte) []byte { b[len(b)-pkgTrailerSize] ^= 1; return b },
		"stream size":     func(b []byte) []byte { b[len(b)-pkgTrailerSize+15] ^= 1; return b },
		"own bytes count": func(b []byte) []byte { b[len(b)-pkgTrailerSize+23] ^= 1; return b },
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(p, damage(bytes.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			f, _ := os.Open(p)
			_, err := readPackageIndex(e.store, f)
			f.Close()
			if err == nil {
				t.Fatal("damaged index accepted")
			}
			if got := readStream(t, e.store, 1, 2); !bytes.Equal(got, want) {
				t.Fatal("rebuilt package differs")
			}
		})
	}
}

func TestPackageReaderNamesAMissingObject(t *testing.T) {
	e, tree := indexEnv(t)
	r, err := e.store.OpenPackage(1, 2, FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := sha256.Sum256(tree["actas/PRES/2.jpg"])
	if err := os.Remove(e.store.ObjectPath(hex.EncodeToString(s[:]))); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	if err == nil || !strings.Contains(err.Error(), "pruned while the package was read") {
		t.Fatalf("err = %v", err)
	}
}

// sampleIndex writes a small index: own bytes, a range of an object
// written in two contiguous parts, and more own bytes.
func sampleIndex(t testing.TB) ([]byte, PackageInfo) {
	var buf bytes.Buffer
	out := newIndexOut(&buf)
	out.Write([]byte("own bytes"))
	if err := out.WriteObject(strings.Repeat("ab", 32), 5, []byte("object bytes")); err != nil {
		t.Fatal(err)
	}
	if err := out.WriteObject(strings.Repeat("ab", 32), 17, []byte("!")); err != nil {
		t.Fatal(err)
	}
	out.Write([]byte("more"))
	info, err := out.finish()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), info
}

func TestPackageIndexParsesWhatItWrote(t *testing.T) {
	b, info := sampleIndex(t)
	sum := sha256.Sum256([]byte("own bytesobject bytes!more"))
	if info.Size != 26 || info.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("info %+v", info)
	}
	got, pieces, err := parsePackageIndex(bytes.NewReader(b), int64(len(b)))
	if err != nil || got != info || len(pieces) != 3 || !pieces[1].isObj || pieces[1].off != 5 || pieces[1].n != 13 || pieces[2].off != 9 {
		t.Fatalf("parsed %+v, %+v, %v", got, pieces, err)
	}
	out := newIndexOut(io.Discard)
	defer out.hash.abort()
	if err := out.WriteObject("not a sha", 0, []byte("x")); err == nil {
		t.Fatal("an object name that is no SHA-256 was accepted")
	}
}

func FuzzParsePackageIndex(f *testing.F) {
	b, _ := sampleIndex(f)
	f.Add(b)
	f.Add([]byte(pkgIndexMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, pieces, err := parsePackageIndex(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var n int64
		for _, p := range pieces {
			if p.start != n || p.n <= 0 {
				t.Fatalf("pieces out of order: %+v", pieces)
			}
			n += p.n
		}
		if n != info.Size {
			t.Fatalf("pieces cover %d bytes of %d", n, info.Size)
		}
	})
}
