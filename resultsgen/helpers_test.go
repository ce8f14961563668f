package resultsgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// readZst returns the decompressed bytes of a .zst file of the package.
func readZst(t testing.TB, path string) []byte {
	t.Helper()
	z, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	b, err := dec.DecodeAll(z, nil)
	if err != nil {
		t.Fatalf("decompress %s: %v", path, err)
	}
	return b
}

// ieeFinal returns the IEE's final (20:00) file of an election.
func ieeFinal(t testing.TB, code string) []byte {
	return readZst(t, "data/PUE_"+code+"_2024.csv.zst")
}

// csvFile is an IEE-layout file split for checking, parsed independently of
// the package's own parser.
type csvFile struct {
	lines    []string // lines 1.. (BOM removed), without the final empty string
	col      map[string]int
	rowLines []string // lines 8..
	rows     [][]string
}

func parseCSV(t testing.TB, raw []byte) *csvFile {
	t.Helper()
	if !bytes.HasPrefix(raw, []byte("\xef\xbb\xbf")) {
		t.Fatal("no BOM")
	}
	s := string(raw[3:])
	if !strings.HasSuffix(s, "\n") {
		t.Fatal("no final line feed")
	}
	f := &csvFile{lines: strings.Split(strings.TrimSuffix(s, "\n"), "\n"), col: map[string]int{}}
	if len(f.lines) < 7 {
		t.Fatalf("only %d lines", len(f.lines))
	}
	for i, h := range strings.Split(f.lines[6], ",") {
		f.col[h] = i
	}
	f.rowLines = f.lines[7:]
	for _, l := range f.rowLines {
		f.rows = append(f.rows, strings.Split(l, ","))
	}
	return f
}

func (f *csvFile) get(r []string, name string) string { return r[f.col[name]] }

// summary returns line 5 as a map from the summary header's names.
func (f *csvFile) summary() map[string]string {
	m := map[string]string{}
	vals := strings.Split(f.lines[4], ",")
	for i, h := range strings.Split(f.lines[3], ",") {
		if i < len(vals) {
			m[h] = vals[i]
		}
	}
	return m
}

func ieeTime(t testing.TB, s string) (time.Time, bool) {
	tm, err := time.ParseInLocation("02/01/2006 15:04:05", s, time.FixedZone("", -6*3600))
	return tm, err == nil
}

type fileState struct {
	sha   string
	size  int64
	mtime time.Time
}

// snapshot lists every regular file under root with its hash and mtime.
func snapshot(t testing.TB, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		sum := sha256.Sum256(b)
		out[filepath.ToSlash(rel)] = fileState{hex.EncodeToString(sum[:]), info.Size(), info.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func planFile(t testing.TB, p *plan, path string) []byte {
	t.Helper()
	for _, f := range p.files {
		if f.path == path {
			return f.data
		}
	}
	t.Fatalf("plan has no %s", path)
	return nil
}

// fullFinal is the default night and its final cut's plan, shared by tests.
var fullFinal = sync.OnceValues(func() (*plan, error) {
	n, err := New(Options{})
	if err != nil {
		return nil, err
	}
	k := n.Cuts() - 1
	return n.plan(k, n.ReplayTime(k))
})

func finalPlan(t testing.TB) *plan {
	t.Helper()
	p, err := fullFinal()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
