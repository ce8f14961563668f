//go:build ignore

// mkdata regenerates the embedded replay data of package resultsgen from the
// IEE Puebla 2024 PREP fixture files. Run from the module root:
//
//	go run ./resultsgen/data/mkdata.go /path/to/fixtures/prep-real/puebla-2024
//
// Each file is compressed with zstd at its best level and written next to
// this program (data/*.csv.zst) or, for the 18:00 cut used only by tests, to
// testdata/. The originals' SHA-256 are printed so PROVENANCE.md can record them.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./resultsgen/data/mkdata.go FIXTURE_DIR")
		os.Exit(2)
	}
	src := os.Args[1]
	jobs := []struct{ from, to string }{
		{"corte_20240603_2000/PUE_GUB_2024.csv", "resultsgen/data/PUE_GUB_2024.csv.zst"},
		{"corte_20240603_2000/PUE_DIP_LOC_2024.csv", "resultsgen/data/PUE_DIP_LOC_2024.csv.zst"},
		{"corte_20240603_2000/PUE_AYUN_2024.csv", "resultsgen/data/PUE_AYUN_2024.csv.zst"},
		{"corte_20240603_2000/PUE_GUB_Candidaturas_2024.csv", "resultsgen/data/PUE_GUB_Candidaturas_2024.csv.zst"},
		{"corte_20240603_2000/PUE_DIP_LOC_Candidaturas_2024.csv", "resultsgen/data/PUE_DIP_LOC_Candidaturas_2024.csv.zst"},
		{"corte_20240603_2000/PUE_AYUN_Candidaturas_2024.csv", "resultsgen/data/PUE_AYUN_Candidaturas_2024.csv.zst"},
		{"corte_20240603_1800/PUE_GUB_2024.csv", "resultsgen/testdata/PUE_GUB_2024_1800.csv.zst"},
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdata:", err)
		os.Exit(1)
	}
	for _, j := range jobs {
		raw, err := os.ReadFile(filepath.Join(src, j.from))
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkdata:", err)
			os.Exit(1)
		}
		out := enc.EncodeAll(raw, nil)
		if err := os.WriteFile(j.to, out, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mkdata:", err)
			os.Exit(1)
		}
		sum := sha256.Sum256(raw)
		fmt.Printf("%s  %d -> %d bytes  sha256 %s\n", j.from, len(raw), len(out), hex.EncodeToString(sum[:]))
	}
}
