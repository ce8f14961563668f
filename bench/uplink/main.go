// Command uplink measures what package mode saves on the institute's
// uplink over a replayed election night: for every cut of the Puebla 2024
// replay (resultsgen) it compares the payload SFTP file mode sends (the
// delta's files, byte for byte) with the size of the package that mode exec
// streams instead, split by kind of file, and prints a markdown table.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/resultsgen"
)

func main() {
	out := flag.String("out", "/tmp/prepcast-uplink", "work directory (emptied first)")
	scale := flag.Float64("scale", 0.1, "fraction of the night's actas")
	cuts := flag.Int("cuts", 97, "cuts in the night (15 minutes apart from 20:00)")
	flag.Parse()
	if err := run(*out, *scale, *cuts); err != nil {
		fmt.Fprintln(os.Stderr, "uplink:", err)
		os.Exit(1)
	}
}

type kindBytes struct{ images, data int64 }

func run(out string, scale float64, cuts int) error {
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	src, state := filepath.Join(out, "tree"), filepath.Join(out, "state")
	night, err := resultsgen.New(resultsgen.Options{Seed: 7, Scale: scale, Cuts: cuts})
	if err != nil {
		return err
	}
	store, err := packager.OpenStore(state)
	if err != nil {
		return err
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var total, peak kindBytes
	var totalPkg, peakPkg int64
	peakCut := -1
	start := time.Now()
	for k := 0; k < night.Cuts(); k++ {
		if _, err := night.WriteCut(src, k); err != nil {
			return err
		}
		res, err := store.Cut(context.Background(), packager.CutOptions{Source: src, Key: priv, Pointers: []string{"json/main.json"}, Keep: 3, Package: true})
		if err != nil {
			return fmt.Errorf("cut %d: %w", k, err)
		}
		if res.NoChange {
			continue
		}
		m, _, err := store.Manifest(res.Info.Seq)
		if err != nil {
			return err
		}
		var from *packager.Manifest
		if res.Info.Seq > 1 {
			if from, _, err = store.Manifest(res.Info.Seq - 1); err != nil {
				return err
			}
		}
		var kb kindBytes
		for _, e := range packager.ComputeDelta(from, m).Changed {
			if packager.Compressible(path.Base(e.Path)) {
				kb.data += e.Size
			} else {
				kb.images += e.Size
			}
		}
		total.images += kb.images
		total.data += kb.data
		totalPkg += res.Info.PackageSize
		// The busiest cut after the first (which carries the whole tree).
		if k > 0 && kb.images+kb.data > peak.images+peak.data {
			peak, peakPkg, peakCut = kb, res.Info.PackageSize, k
		}
	}
	mb := func(n int64) float64 { return float64(n) / 1e6 }
	row := func(name string, kb kindBytes, pkg int64) {
		sftp := kb.images + kb.data
		fmt.Printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f %% |\n",
			name, mb(kb.images), mb(kb.data), mb(sftp), mb(pkg), float64(sftp)/float64(pkg), 100*(1-float64(pkg)/float64(sftp)))
	}
	fmt.Printf("## Uplink bytes: SFTP file mode vs package mode (%s, Puebla 2024 replay)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| cuts | images MB | CSV/JSON MB | SFTP payload MB | package MB | ratio | saved |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	row(fmt.Sprintf("whole night (%d cuts)", night.Cuts()), total, totalPkg)
	if peakCut >= 0 {
		row(fmt.Sprintf("busiest cut (%s)", night.CutID(peakCut)), peak, peakPkg)
	}
	fmt.Printf("\nScale %.2f of the night's actas (seed 7), %d cuts 15 minutes apart; the first cut carries the\n", scale, night.Cuts())
	fmt.Println("whole tree. SFTP payload is the bytes of the new or changed files; the package is the zstd")
	fmt.Println("archive mode exec streams instead (CSV/JSON compressed, images stored in raw zstd blocks).")
	fmt.Printf("`go run ./bench/uplink -scale %.2f` reproduces it (%.0f s here).\n", scale, time.Since(start).Seconds())
	return nil
}
