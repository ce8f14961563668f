// Package cuttest writes the small PREP-shaped results tree that the
// publisher's and the difusor's tests cut, keeps the institute's store of
// its signed cuts, and damages files the way their tests need. It is for
// tests only.
package cuttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/packager"
)

// WriteTree brings the results tree in src to cut n: a new acta image, the
// CSV database rewritten (its header and 30 of its 600 rows change, so
// it travels as a delta in a package), the cut's JSON in a directory of its
// own (the previous cut's leaves) and json/main.json pointing at it.
func WriteTree(t testing.TB, src string, n int) {
	t.Helper()
	files := map[string]string{
		fmt.Sprintf("actas/%03d.jpg", n):          strings.Repeat(fmt.Sprint(n), 3000),
		"datos/PUE_GUB_2024.csv":                  database(n),
		fmt.Sprintf("json/c%03d/totales.json", n): fmt.Sprintf(`{"corte":%d}`, n),
		"json/main.json":                          fmt.Sprintf(`{"corte":"json/c%03d/totales.json"}`, n),
	}
	if n > 1 {
		if err := os.RemoveAll(filepath.Join(src, "json", fmt.Sprintf("c%03d", n-1))); err != nil {
			t.Fatal(err)
		}
	}
	for rel, data := range files {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// database returns the CSV database of cut n: rows whose acta was counted
// by cut n show its votes.
func database(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\ufeffGUBERNATURA\ncorte %d\nCLAVE_CASILLA,PAN,MORENA,ESTATUS\n", n)
	for i := range 600 {
		if i%20 < n {
			v := uint32(i) * 2654435761
			fmt.Fprintf(&b, "'21%04dB0100',%d,%d,%d,CAPTURADA,%02d:%02d\n", i, v%311, v/311%97, v/30167%53, v%24, v%60)
		} else {
			fmt.Fprintf(&b, "'21%04dB0100',SIN DATO,SIN DATO,SIN ACTA\n", i)
		}
	}
	return b.String()
}

// FlipByte alters the byte at off of a (read-only) file in place.
func FlipByte(t testing.TB, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Institute is a store of signed cuts of the tree WriteTree writes, as
// the institute keeps them.
type Institute struct {
	T     testing.TB
	Src   string // the results tree
	Store *packager.Store
	Priv  ed25519.PrivateKey
	Pub   ed25519.PublicKey
	N     int // cuts made
}

// NewInstitute returns an institute with a new key and an empty store.
func NewInstitute(t testing.TB) *Institute {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	st, err := packager.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Institute{T: t, Src: t.TempDir(), Store: st, Priv: priv, Pub: pub}
}

// Cut writes the next cut of the tree (see WriteTree) and cuts it, with its
// package, json/main.json as the pointer.
func (f *Institute) Cut() *packager.CutInfo {
	f.T.Helper()
	f.N++
	WriteTree(f.T, f.Src, f.N)
	res, err := f.Store.Cut(context.Background(), packager.CutOptions{Source: f.Src, Key: f.Priv, Pointers: []string{"json/main.json"}, Package: true})
	if err != nil {
		f.T.Fatal(err)
	}
	return res.Info
}
