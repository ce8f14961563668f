// Command mktree writes a synthetic results tree for the cut benchmarks:
// incompressible "acta images" and compressible JSON/CSV files, deterministic
// from a seed. With -change it rewrites a fraction of the files in place of
// an existing tree, as the next cut of a PREP generator would.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	out := flag.String("out", "", "tree directory")
	files := flag.Int("files", 20000, "number of files")
	mb := flag.Int("mb", 2048, "approximate total size in MB")
	jsonFrac := flag.Float64("json-frac", 0.1, "fraction of files that are JSON/CSV text")
	seed := flag.Uint64("seed", 1, "seed")
	change := flag.Float64("change", 0, "rewrite this fraction of the files with new content (next cut)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mktree: -out is required")
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(*seed, 7))
	avg := int64(*mb) << 20 / int64(*files)
	var written int64
	var n int
	for i := 0; i < *files; i++ {
		text := float64(i%1000)/1000 < *jsonFrac
		var rel string
		if text {
			rel = fmt.Sprintf("json/e%02d/r%05d.json", i%7, i)
		} else {
			rel = fmt.Sprintf("actas/e%02d/%06d.jpg", i%3, i)
		}
		size := avg/2 + rng.Int64N(avg+1)
		if text {
			size = max(1024, size/4)
		}
		p := filepath.Join(*out, rel)
		if *change > 0 {
			if rng.Float64() >= *change {
				continue
			}
		} else if fi, err := os.Stat(p); err == nil && fi.Size() == size {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fail(err)
		}
		data := make([]byte, size)
		if text {
			line := fmt.Sprintf(`{"seccion":%d,"votos":[%d,%d,%d],"estado":"CAPTURADA"},`+"\n", i, rng.IntN(500), rng.IntN(500), rng.IntN(500))
			copy(data, strings.Repeat(line, int(size)/len(line)+1))
		} else {
			for j := 0; j+8 <= len(data); j += 8 {
				v := rng.Uint64()
				for k := 0; k < 8; k++ {
					data[j+k] = byte(v >> (8 * k))
				}
			}
			copy(data, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0})
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			fail(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			fail(err)
		}
		written += size
		n++
	}
	fmt.Printf("%d files written, %d bytes\n", n, written)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mktree:", err)
	os.Exit(1)
}
