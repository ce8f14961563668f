package apply

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/prepcast/prepcast/packager"
)

// testPackage returns a small signed package of two files and the key.
func testPackage(t testing.TB) ([]byte, ed25519.PublicKey) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	files := map[string][]byte{"json/main.json": []byte(`{"corte":1}`), "datos/a.csv": []byte("a,b\n1,2\n")}
	loc, _ := time.LoadLocation("America/Mexico_City")
	created := time.Date(2024, 6, 2, 20, 0, 0, 0, loc)
	m := &packager.Manifest{Format: packager.ManifestFormat, Seq: 1, ID: created.Format(packager.IDLayout), Created: created,
		Zone: "America/Mexico_City", Pointers: []string{"json/main.json"}}
	for _, p := range []string{"datos/a.csv", "json/main.json"} {
		sum := sha256.Sum256(files[p])
		m.Entries = append(m.Entries, packager.Entry{Path: p, Size: int64(len(files[p])), SHA256: hex.EncodeToString(sum[:])})
		m.Bytes += int64(len(files[p]))
	}
	m.Files = len(m.Entries)
	mb, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	add := func(name string, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644})
		_, _ = tw.Write(data)
	}
	add(packager.PkgManifest, mb)
	add(packager.PkgSignature, packager.Sign(priv, mb))
	add(packager.PkgDelta, []byte("{}"))
	add("datos/a.csv", files["datos/a.csv"])
	add("json/main.json", files["json/main.json"])
	_ = tw.Close()
	enc, _ := zstd.NewWriter(nil)
	return enc.EncodeAll(tb.Bytes(), nil), pub
}

func verifier(pub ed25519.PublicKey) verifyFunc {
	return func(mb, sig []byte) (*packager.Manifest, error) {
		if err := packager.Verify(pub, mb, sig); err != nil {
			return nil, err
		}
		return packager.ParseManifest(mb)
	}
}

func TestReadPackageAcceptsAWholePackage(t *testing.T) {
	pkg, pub := testPackage(t)
	var got []string
	m, _, _, err := readPackage(bytes.NewReader(pkg), DefaultMaxManifest, verifier(pub), nil, func(e packager.Entry, r io.Reader) error {
		got = append(got, e.Path)
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil || m.Seq != 1 || len(got) != 2 {
		t.Fatalf("read %v, %v", got, err)
	}
}

// A stream that goes on past what the signed manifest allows is refused
// once over the bound, not read to its end.
func TestReadPackageBoundsTheStream(t *testing.T) {
	pkg, pub := testPackage(t)
	// Skippable zstd frames: valid padding any decoder skips.
	frame := append([]byte{0x50, 0x2a, 0x4d, 0x18, 0xf8, 0xff, 0x00, 0x00}, make([]byte, 0xfff8)...)
	r := &repeatReader{head: pkg, frame: frame, n: 1 << 30}
	_, _, _, err := readPackage(r, DefaultMaxManifest, verifier(pub), nil, nil)
	if !errors.Is(err, ErrBadPackage) {
		t.Fatalf("err = %v", err)
	}
	if r.read > 4<<20 {
		t.Fatalf("read %d bytes of a stream whose manifest allows about 1 MiB", r.read)
	}
}

type repeatReader struct {
	head, frame []byte
	off         int
	read, n     int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.read >= r.n {
		return 0, io.EOF
	}
	var src []byte
	if r.read < int64(len(r.head)) {
		src = r.head[r.read:]
	} else {
		src = r.frame[r.off:]
	}
	n := copy(p, src)
	if r.read >= int64(len(r.head)) {
		r.off = (r.off + n) % len(r.frame)
	}
	r.read += int64(n)
	return n, nil
}

func FuzzReadPackage(f *testing.F) {
	pkg, pub := testPackage(f)
	f.Add(pkg)
	f.Add(pkg[:len(pkg)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, _, err := readPackage(bytes.NewReader(data), 1<<20, verifier(pub), nil, func(e packager.Entry, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err == nil && m == nil {
			t.Fatal("accepted without a manifest")
		}
	})
}
