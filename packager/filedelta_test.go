package packager

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// deltaCSVs returns a results database and its next version, which
// rewrites one row in fifty, as a cut does.
func deltaCSVs() (old, next []byte) {
	var a, b strings.Builder
	for i := range 6000 {
		fmt.Fprintf(&a, "21%04dB01,%d,%d,SIN DATO\n", i, i*7%311, i*13%97)
		if i%50 == 0 {
			fmt.Fprintf(&b, "21%04dB01,%d,%d,CAPTURADA\n", i, i*7%311+1, i*13%97+2)
		} else {
			fmt.Fprintf(&b, "21%04dB01,%d,%d,SIN DATO\n", i, i*7%311, i*13%97)
		}
	}
	return []byte(a.String()), []byte(b.String())
}

// deltaPackage builds the package of form f from a cut holding old
// versions to one holding new versions of the same paths.
func deltaPackage(t testing.TB, f PackageForm, old, new map[string][]byte) (pkg []byte, pub ed25519.PublicKey, objs memObjects) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	objs = memObjects{}
	manifest := func(seq int64, files map[string][]byte) *Manifest {
		var es []Entry
		for p, b := range files {
			e := entryFor(p, b)
			objs[e.SHA256] = b
			es = append(es, e)
		}
		slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
		return testManifest(t, seq, es...)
	}
	from, to := manifest(1, old), manifest(2, new)
	mb, err := to.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WritePackage(&buf, ComputeDelta(from, to), f, mb, Sign(priv, mb), objs.open); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), pub, objs
}

// deltaMembers returns the paths of a package's delta members.
func deltaMembers(t *testing.T, pkg []byte) map[string]bool {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	out := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h.PAXRecords[PAXDeltaBase]; ok {
			out[h.Name] = true
		}
	}
}

func (m memObjects) base(_, sha string) ([]byte, error) {
	b, ok := m[sha]
	if !ok {
		return nil, fmt.Errorf("no object %.12s", sha)
	}
	return b, nil
}

func TestDeltaPackageCarriesOnlyWhatPays(t *testing.T) {
	csvOld, csvNew := deltaCSVs()
	rng := mrand.New(mrand.NewPCG(3, 4))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	old := map[string][]byte{"datos/PUE_GUB_2024.csv": csvOld, "json/main.json": []byte(`{"corte":1}`),
		"json/ruido.json": noise(40 << 10), "json/mapa.json": bytes.Repeat([]byte(`{"x":1},`), 4000)}
	new := map[string][]byte{"datos/PUE_GUB_2024.csv": csvNew, "json/main.json": []byte(`{"corte":2}`),
		"json/ruido.json": noise(40 << 10), "json/mapa.json": bytes.Repeat([]byte(`{"x":2},`), 4000),
		"actas/1.jpg": noise(20 << 10)}
	pkg, pub, objs := deltaPackage(t, FileDeltas, old, new)
	wholePkg, _, _ := deltaPackage(t, WholeFiles, old, new)

	// The database, rewritten in one row of fifty, travels as a delta;
	// a file rewritten whole (noise), a small file, an image, a file
	// that compresses to almost nothing alone, and a new file do not.
	got := deltaMembers(t, pkg)
	if !got["datos/PUE_GUB_2024.csv"] || len(got) != 1 {
		t.Fatalf("delta members %v, want only the database", got)
	}
	if d := deltaMembers(t, wholePkg); len(d) != 0 {
		t.Fatalf("whole-files package has delta members %v", d)
	}
	files := map[string][]byte{}
	_, err := ReadPackage(bytes.NewReader(pkg), pub, objs.base, nil, func(e Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		files[e.Path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range new {
		if !bytes.Equal(files[p], b) {
			t.Fatalf("%s decoded to other bytes", p)
		}
	}
	if len(pkg) >= len(wholePkg)-8<<10 {
		t.Fatalf("package with deltas %d bytes, whole files %d", len(pkg), len(wholePkg))
	}
	t.Logf("package with deltas %d bytes, whole files %d", len(pkg), len(wholePkg))

	// Without a base, or against other content, nothing is accepted.
	if _, err := ReadPackage(bytes.NewReader(pkg), pub, nil, nil, nil); !errors.Is(err, ErrBadPackage) || !strings.Contains(err.Error(), "delta") {
		t.Fatalf("no base: %v", err)
	}
	other := func(string, string) ([]byte, error) { return csvNew, nil }
	if _, err := ReadPackage(bytes.NewReader(pkg), pub, other, nil, nil); !errors.Is(err, ErrBadPackage) {
		t.Fatalf("other base: %v", err)
	}
}

// A delta member that decodes to more or fewer bytes than its file,
// carries bytes after its frame, is cut short, or is not smaller than its
// file, is refused by the reader itself, before any hash.
func TestDeltaReaderBounds(t *testing.T) {
	base, content := deltaCSVs()
	enc := func(b []byte) []byte {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(deltaDictID, base), zstd.WithWindowSize(deltaWindow(len(base))))
		if err != nil {
			t.Fatal(err)
		}
		return e.EncodeAll(b, nil)
	}
	good := enc(content)
	read := func(member []byte, size int64) error {
		dr, err := NewDeltaReader(bytes.NewReader(member), int64(len(member)), size, base, `"f"`)
		if err != nil {
			return err
		}
		got, err := io.ReadAll(dr)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, content) {
			return errors.New("other content")
		}
		return nil
	}
	if err := read(good, int64(len(content))); err != nil {
		t.Fatalf("good delta: %v", err)
	}
	for name, tc := range map[string]struct {
		member []byte
		size   int64
	}{
		"decodes longer":      {enc(append(append([]byte{}, content...), 'x')), int64(len(content))},
		"decodes shorter":     {enc(content[:len(content)-1]), int64(len(content))},
		"bytes after a frame": {append(append([]byte{}, good...), 1, 2, 3), int64(len(content))},
		"two frames":          {append(append([]byte{}, good...), enc([]byte("x"))...), int64(len(content))},
		"not smaller":         {good, int64(len(good))},
		"cut short":           {good[:len(good)-1], int64(len(content))},
	} {
		if err := read(tc.member, tc.size); !errors.Is(err, ErrBadDelta) || !errors.Is(err, ErrBadPackage) {
			t.Errorf("%s: %v, want a bad delta", name, err)
		}
	}
	// A frame for another dictionary does not decode against this one.
	other, _ := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(deltaDictID+1, base), zstd.WithWindowSize(deltaWindow(len(base))))
	if err := read(other.EncodeAll(content, nil), int64(len(content))); !errors.Is(err, ErrBadDelta) {
		t.Errorf("frame of another dictionary: %v", err)
	}
}
