package packager

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchTree writes n files averaging avg bytes below root: 90 % incompressible
// images, 10 % JSON. With change > 0 it rewrites that fraction instead.
func benchTree(b *testing.B, root string, n, avg int, seed uint64, change float64) int64 {
	b.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var written int64
	for i := 0; i < n; i++ {
		if change > 0 && rng.Float64() >= change {
			continue
		}
		rel := fmt.Sprintf("actas/e%d/%06d.jpg", i%3, i)
		if i%10 == 0 {
			rel = fmt.Sprintf("json/e%d/%06d.json", i%7, i)
		}
		size := avg/2 + rng.IntN(avg+1)
		data := make([]byte, size)
		for j := 0; j+8 <= size; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		if i%10 == 0 {
			for j := range data {
				data[j] = "{\"votos\": 12345},\n"[j%18]
			}
			data[0] = byte(seed)
		}
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		written += int64(size)
	}
	os.MkdirAll(filepath.Join(root, "json"), 0o755)
	os.WriteFile(filepath.Join(root, "json", "main.json"), []byte(fmt.Sprint(seed)), 0o644)
	return written
}

// BenchmarkCutFirst is the first cut of a 2,000-file, ~200 MB tree.
func BenchmarkCutFirst(b *testing.B) {
	e := newCutEnv(b)
	total := benchTree(b, e.src, 2000, 100<<10, 1, 0)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st, err := OpenStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := st.Cut(context.Background(), e.opts()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecutUnchanged re-cuts an unchanged 20,000-file tree.
func BenchmarkRecutUnchanged(b *testing.B) {
	e := newCutEnv(b)
	benchTree(b, e.src, 20000, 2<<10, 1, 0)
	e.cut()
	time.Sleep(racyWindow + 100*time.Millisecond)
	o := e.opts()
	o.AllowEmpty = true
	if _, err := e.store.Cut(context.Background(), o); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := e.cut(); !r.NoChange {
			b.Fatal("tree changed")
		}
	}
}

// BenchmarkCutTenPercent cuts a 2,000-file tree after 10 % of it changed;
// b.SetBytes is the changed bytes.
func BenchmarkCutTenPercent(b *testing.B) {
	e := newCutEnv(b)
	benchTree(b, e.src, 2000, 100<<10, 1, 0)
	e.cut()
	var changed int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		changed = benchTree(b, e.src, 2000, 100<<10, uint64(i+2), 0.1)
		time.Sleep(racyWindow + 100*time.Millisecond)
		b.StartTimer()
		e.cut()
	}
	b.SetBytes(changed)
}

// BenchmarkPackageIndex builds the package index of a cut of a 2,000-file,
// ~200 MB tree from nothing, as a cut does (objects just hashed);
// b.SetBytes is the stream's size.
func BenchmarkPackageIndex(b *testing.B) {
	e := newCutEnv(b)
	benchTree(b, e.src, 2000, 100<<10, 1, 0)
	res := e.cut()
	m, mb, err := e.store.Manifest(res.Info.Seq)
	if err != nil {
		b.Fatal(err)
	}
	sig, _ := e.store.Signature(res.Info.Seq)
	fresh := map[string]bool{}
	for _, ent := range m.Entries {
		fresh[ent.SHA256] = true
	}
	d := ComputeDelta(nil, m)
	p := filepath.Join(b.TempDir(), "p.pkg")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.Remove(p)
		info, err := e.store.writePackageIndex(p, d, FileDeltas, mb, sig, fresh)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(info.Size)
	}
}
