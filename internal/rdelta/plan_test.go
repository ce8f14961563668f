package rdelta

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// rebuild applies p to old with literal bytes from new and fails the test
// unless the result is new.
func rebuild(t testing.TB, p *Plan, old, new []byte) {
	t.Helper()
	got, err := p.Apply(old, func(dst, n int64) []byte { return new[dst : dst+n] })
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !bytes.Equal(got, new) {
		t.Fatalf("applying the plan does not give the new file (%d bytes, want %d)", len(got), len(new))
	}
}

// rows makes a CSV-like file of n lines.
func rows(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "%d,casilla-%d,%d,%d,%d,%d\n", i, r.IntN(9000), r.IntN(700), r.IntN(700), r.IntN(700), r.IntN(50))
	}
	return b.Bytes()
}

func TestPlanShapes(t *testing.T) {
	old := rows(1, 5000) // about 150 KB
	ins := []byte("9999,casilla-nueva,1,2,3,4\n")
	mid := len(old) / 2
	changed := bytes.Clone(old)
	for _, at := range []int{1000, 40000, 90000, 140000} {
		changed[at] ^= 0x5a
	}
	cases := []struct {
		name       string
		old, new   []byte
		maxLiteral int64
		minCopied  int64
	}{
		{"identical", old, old, 0, int64(len(old))},
		{"insertion shifts the rest", old, concat(old[:mid], ins, old[mid:]), int64(len(ins)), int64(len(old))},
		{"deletion", old, concat(old[:mid], old[mid+500:]), 0, int64(len(old) - 500)},
		{"append", old, concat(old, ins, ins), 2 * int64(len(ins)), int64(len(old))},
		{"prepend", old, concat(ins, old), int64(len(ins)), int64(len(old))},
		{"shrinks to its start", old, old[:len(old)/3], 0, int64(len(old) / 3)},
		{"shrinks to its end", old, old[len(old)/3:], 0, int64(len(old) - len(old)/3)},
		{"scattered byte changes", old, changed, 4 * 128, int64(len(old)) - 4*128},
		{"entirely different", old, rows(2, 5000), -1, -1},
		{"tiny new file", old, []byte("x"), 1, 0},
		{"tiny old file", []byte("abc"), old, int64(len(old)), 0},
		{"both empty", nil, nil, 0, 0},
		{"new empty", old, nil, 0, 0},
		{"moved blocks", old, concat(old[mid:], old[:mid]), 0, int64(len(old))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Compute(c.old, c.new, Options{MinCopy: -1})
			if err := p.Check(); err != nil {
				t.Fatal(err)
			}
			rebuild(t, p, c.old, c.new)
			q := Compute(c.old, c.new, Options{})
			if err := q.Check(); err != nil {
				t.Fatal(err)
			}
			rebuild(t, q, c.old, c.new)
			for _, op := range q.Ops {
				if op.Copy && op.Len < DefaultMinCopy {
					t.Errorf("a %d-byte copy was kept", op.Len)
				}
			}
			if c.maxLiteral >= 0 && p.Literal > c.maxLiteral {
				t.Errorf("literal %d bytes, want at most %d", p.Literal, c.maxLiteral)
			}
			if c.minCopied >= 0 && p.Copied < c.minCopied {
				t.Errorf("copied %d bytes, want at least %d", p.Copied, c.minCopied)
			}
			if c.name == "identical" && len(p.Ops) != 1 {
				t.Errorf("identical files take %d ops, want one copy", len(p.Ops))
			}
			if bytes.Equal(c.old, c.new) != (p.Probe < 0 && len(c.old) == len(c.new)) {
				t.Errorf("probe %d does not tell old from new", p.Probe)
			}
			if p.Probe >= 0 && c.old[p.Probe] == c.new[p.Probe] {
				t.Errorf("old and new agree at probe offset %d", p.Probe)
			}
		})
	}
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// FuzzPlan checks that applying the plan to the old file always gives the
// new one, for edits of every kind.
func FuzzPlan(f *testing.F) {
	f.Add(uint64(1), uint16(100), uint8(3), uint8(40))
	f.Add(uint64(7), uint16(3000), uint8(30), uint8(200))
	f.Add(uint64(9), uint16(0), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, nrows uint16, edits, block uint8) {
		minCopy := int(block) * 4 // 0 (the default) to about 1 KB
		old := rows(seed, int(nrows))
		r := rand.New(rand.NewPCG(seed, 2))
		new := bytes.Clone(old)
		for range edits {
			at := 0
			if len(new) > 0 {
				at = r.IntN(len(new))
			}
			switch r.IntN(4) {
			case 0: // insert
				new = concat(new[:at], rows(seed+uint64(at), 1+r.IntN(3)), new[at:])
			case 1: // delete
				new = concat(new[:at], new[min(len(new), at+r.IntN(300)):])
			case 2: // change a byte
				if len(new) > 0 {
					new[at]++
				}
			case 3: // repeat a piece of the old file
				if len(old) > 0 {
					s := r.IntN(len(old))
					new = concat(new[:at], old[s:min(len(old), s+r.IntN(500))], new[at:])
				}
			}
		}
		p := Compute(old, new, Options{Block: int(block), MinCopy: minCopy})
		if err := p.Check(); err != nil {
			t.Fatal(err)
		}
		rebuild(t, p, old, new)
	})
}

func TestCacheComputesOncePerPair(t *testing.T) {
	c := NewCache(0)
	old, new := rows(1, 2000), rows(1, 2100)
	var calls atomic.Int32
	compute := func() (*Plan, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond) // let the other callers arrive meanwhile
		return Compute(old, new, Options{}), nil
	}
	var wg sync.WaitGroup
	plans := make([]*Plan, 30)
	for i := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.Get(Key{"a", "b"}, compute)
			if err != nil {
				t.Error(err)
			}
			plans[i] = p
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("30 concurrent callers computed the plan %d times, want once", n)
	}
	for _, p := range plans {
		if p != plans[0] {
			t.Fatal("callers got different plans")
		}
	}
	if _, err := c.Get(Key{"a", "b"}, compute); err != nil || calls.Load() != 1 {
		t.Fatalf("a later call computed again (calls %d, err %v)", calls.Load(), err)
	}
}

func TestCacheBoundAndErrors(t *testing.T) {
	c := NewCache(10)
	mk := func(n int) func() (*Plan, error) {
		return func() (*Plan, error) { return &Plan{Ops: make([]Op, n)}, nil }
	}
	for i := range 5 {
		if _, err := c.Get(Key{fmt.Sprint(i), "x"}, mk(4)); err != nil {
			t.Fatal(err)
		}
	}
	if c.ops > 10 {
		t.Fatalf("cache holds %d ops, bound is 10", c.ops)
	}
	before := c.Computed()
	_, _ = c.Get(Key{"0", "x"}, mk(4)) // evicted long ago
	if c.Computed() != before+1 {
		t.Fatal("an evicted plan was not computed again")
	}
	_, _ = c.Get(Key{"4", "x"}, mk(4)) // among the most recent
	if c.Computed() != before+1 {
		t.Fatal("a recent plan was computed again")
	}
	fail := func() (*Plan, error) { return nil, os.ErrNotExist }
	if _, err := c.Get(Key{"e", "x"}, fail); err == nil {
		t.Fatal("error not returned")
	}
	if _, err := c.Get(Key{"e", "x"}, mk(1)); err != nil {
		t.Fatal("an error was cached")
	}
}

// puebla returns a real IEE Puebla 2024 database cut (testdata of the
// packager package).
func puebla(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "packager", "testdata", "puebla", name+".csv.zst"))
	if err != nil {
		t.Skipf("fixture: %v", err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rsyncLiteral is what rsync -a sends as literal data for the 18:00 to
// 20:00 governor database (measured with --stats; see the package's
// benchmark results).
const rsyncLiteral = 587_000

// TestPuebla checks the planner on the real governor database between the
// 18:00 and 20:00 cuts: the plan rebuilds the file and its literal bytes
// stay well under what rsync sends.
func TestPuebla(t *testing.T) {
	old, new := puebla(t, "PUE_GUB_2024.1800"), puebla(t, "PUE_GUB_2024.2000")
	for _, minCopy := range []int{-1, 0} {
		start := time.Now()
		p := Compute(old, new, Options{MinCopy: minCopy})
		took := time.Since(start)
		rebuild(t, p, old, new)
		t.Logf("min copy %d: old %d B, new %d B: %d ops, literal %d B, copied %d B, planned in %v", minCopy, len(old), len(new), len(p.Ops), p.Literal, p.Copied, took)
		if p.Literal > rsyncLiteral*12/10 {
			t.Errorf("literal %d B, more than 1.2x rsync's %d B", p.Literal, rsyncLiteral)
		}
		if minCopy < 0 && p.Literal > 100_000 {
			t.Errorf("literal %d B without coalescing; the changed rows are under 100 KB", p.Literal)
		}
	}
}

func BenchmarkPuebla(b *testing.B) {
	old, new := puebla(b, "PUE_GUB_2024.1800"), puebla(b, "PUE_GUB_2024.2000")
	b.SetBytes(int64(len(new)))
	var p *Plan
	for b.Loop() {
		p = Compute(old, new, Options{})
	}
	b.ReportMetric(float64(p.Literal), "literal-B")
	b.ReportMetric(float64(len(p.Ops)), "ops")
}
