package resultsgen

import (
	"os"
	"testing"
)

// BenchmarkWriteCut writes the final cut at Scale 0.1 (about 2,200 acta images
// of 200-600 KiB) into an empty directory; MB/s is the tree's size over the
// time to write it.
func BenchmarkWriteCut(b *testing.B) {
	n, err := New(Options{Seed: 1, Scale: 0.1})
	if err != nil {
		b.Fatal(err)
	}
	k := n.Cuts() - 1
	root := b.TempDir()
	var st Stats
	for b.Loop() {
		b.StopTimer()
		if err := os.RemoveAll(root); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if st, err = n.WriteCut(root, k); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(st.Bytes)
	b.ReportMetric(float64(st.Files), "files/op")
}

// BenchmarkPlan measures rendering one full-size cut in memory: three CSVs,
// the zip and the JSON tree.
func BenchmarkPlan(b *testing.B) {
	n, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	k := n.Cuts() - 1
	for b.Loop() {
		if _, err := n.plan(k, n.ReplayTime(k)); err != nil {
			b.Fatal(err)
		}
	}
}
