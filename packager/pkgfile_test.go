package packager

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

type memObjects map[string][]byte

func (m memObjects) open(e Entry) (io.ReadCloser, error) {
	b, ok := m[e.SHA256]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func entryFor(path string, data []byte) Entry {
	s := sha256.Sum256(data)
	return Entry{Path: path, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
}

// buildPackage makes a signed two-cut delta with a JPEG-like file, a CSV,
// a pointer and a deleted path, and returns the package bytes.
func buildPackage(t testing.TB) (pkg []byte, pub ed25519.PublicKey, files map[string][]byte) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	rng := mrand.New(mrand.NewPCG(1, 2))
	img := make([]byte, 300<<10)
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	csv := []byte(strings.Repeat("\ufeff'210423B0100,SIN DATO,12,34\n", 4000))
	files = map[string][]byte{
		"actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg": img,
		"datos/PUE_GUB_2024.csv":                          csv,
		"json/main.json":                                  []byte(`{"corte":"20240603_0100"}`),
	}
	from := testManifest(t, 1, entryFor("json/main.json", []byte(`{"corte":"x"}`)), entryFor("old.zip", []byte("z")))
	var entries []Entry
	objs := memObjects{}
	for _, p := range []string{"actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg", "datos/PUE_GUB_2024.csv", "json/main.json"} {
		entries = append(entries, entryFor(p, files[p]))
		objs[entries[len(entries)-1].SHA256] = files[p]
	}
	to := testManifest(t, 2, entries...)
	fb, _ := from.Encode()
	to.Prev = Hash(fb)
	mb, err := to.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := WritePackage(&buf, ComputeDelta(from, to), WholeFiles, mb, Sign(priv, mb), objs.open)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if info.Size != int64(buf.Len()) || info.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("package info %+v does not describe the bytes written", info)
	}
	return buf.Bytes(), pub, files
}

func TestPackageRoundTrip(t *testing.T) {
	pkg, pub, files := buildPackage(t)
	got := map[string][]byte{}
	var order []string
	pc, err := ReadPackage(bytes.NewReader(pkg), pub, nil, nil, func(e Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[e.Path] = b
		order = append(order, e.Path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		if !bytes.Equal(got[p], want) {
			t.Errorf("%s: bytes differ after the round trip", p)
		}
	}
	if order[len(order)-1] != "json/main.json" {
		t.Errorf("pointer is not the last member: %v", order)
	}
	if pc.Delta.FromSeq != 1 || strings.Join(pc.Delta.Deleted, ",") != "old.zip" {
		t.Errorf("delta info %+v", pc.Delta)
	}
	// The image went into raw blocks: the package is not much smaller than
	// the image, but the CSV compressed well.
	if int64(len(pkg)) > int64(len(files["actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg"]))+int64(len(files["datos/PUE_GUB_2024.csv"]))/5 {
		t.Errorf("package is %d bytes: the CSV did not compress", len(pkg))
	}
}

func TestPackageDecodesWithStandardTools(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd not installed")
	}
	pkg, _, files := buildPackage(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "p.tar.zst")
	os.WriteFile(p, pkg, 0o644)
	out := filepath.Join(dir, "x")
	os.Mkdir(out, 0o755)
	cmd := exec.Command("sh", "-c", "zstd -dc '"+p+"' | tar -x -C '"+out+"'")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zstd -d | tar -x: %v\n%s", err, b)
	}
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s extracted by tar differs (%v)", rel, err)
		}
	}
}

func TestReadPackageRejectsTampering(t *testing.T) {
	pkg, pub, _ := buildPackage(t)
	dec, _ := zstd.NewReader(nil)
	raw, err := dec.DecodeAll(pkg, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	recompress := func(b []byte) []byte { return enc.EncodeAll(b, nil) }
	// Flip one byte inside the CSV content: the manifest hash no longer matches.
	i := bytes.Index(raw, []byte("'210423B0100"))
	tampered := bytes.Clone(raw)
	tampered[i+1] = '9'
	_, err = ReadPackage(bytes.NewReader(recompress(tampered)), pub, nil, nil, nil)
	if !errors.Is(err, ErrBadPackage) {
		t.Errorf("tampered content accepted: %v", err)
	}
	// Another key: the signature fails.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := ReadPackage(bytes.NewReader(pkg), other, nil, nil, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("package verified with another key: %v", err)
	}
	// Truncated stream.
	if _, err := ReadPackage(bytes.NewReader(pkg[:len(pkg)/2]), pub, nil, nil, nil); err == nil {
		t.Error("truncated package accepted")
	}
}

func FuzzReadPackage(f *testing.F) {
	pkg, pub, _ := buildPackage(f)
	csvOld, csvNew := deltaCSVs()
	dpkg, dpub, objs := deltaPackage(f, FileDeltas, map[string][]byte{"datos/a.csv": csvOld}, map[string][]byte{"datos/a.csv": csvNew})
	f.Add(pkg)
	f.Add(pkg[:100])
	f.Add(dpkg)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		file := func(e Entry, r io.Reader) error {
			if strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") {
				t.Fatalf("unsafe path %q reached the caller", e.Path)
			}
			_, err := io.Copy(io.Discard, r)
			return err
		}
		_, _ = ReadPackage(bytes.NewReader(data), pub, nil, nil, file)
		_, _ = ReadPackage(bytes.NewReader(data), dpub, objs.base, nil, file)
	})
}

// A package whose file member tries to leave the root is refused before any
// content reaches the caller, even with a valid signed manifest in front.
func TestReadPackageRefusesTraversal(t *testing.T) {
	pkg, pub, _ := buildPackage(t)
	dec, _ := zstd.NewReader(nil)
	raw, _ := dec.DecodeAll(pkg, nil)
	tr := tar.NewReader(bytes.NewReader(raw))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		body, _ := io.ReadAll(tr)
		if h.Name == "datos/PUE_GUB_2024.csv" {
			h.Name = "../../etc/cron.d/x"
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	enc, _ := zstd.NewWriter(nil)
	calls := 0
	_, err := ReadPackage(bytes.NewReader(enc.EncodeAll(out.Bytes(), nil)), pub, nil, nil, func(e Entry, r io.Reader) error {
		if strings.Contains(e.Path, "..") {
			t.Fatalf("traversal path %q reached the caller", e.Path)
		}
		calls++
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if !errors.Is(err, ErrBadPackage) || !strings.Contains(err.Error(), "..") {
		t.Fatalf("traversal member: %v", err)
	}
}
