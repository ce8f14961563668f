package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
)

// deltaCSV is a results database of rows numbered from 0 whose vote
// counts depend on the row and on a version: a new version changes one
// row in 37.
func deltaCSV(rows, version int) []byte {
	var b bytes.Buffer
	b.WriteString("CLAVE_CASILLA,ID_DISTRITO,SECCION,PAN,PRI,MORENA,TOTAL\n")
	for r := 0; r < rows; r++ {
		v := (r * 131) % 457
		if r%37 == version%37 {
			v += version
		}
		fmt.Fprintf(&b, "'21%06dB0100,%d,%d,%d,%d,%d,%d\n", r, r%26+1, r%3000, v, v*3%211, v*7%389, v+v*3%211+v*7%389)
	}
	return b.Bytes()
}

// deltaRows is how many rows treeGen writes in its delta database (0: none).
func (g *treeGen) writeDeltaCSV(write func(rel string, data []byte)) {
	if g.deltaRows > 0 {
		write("datos/PUE_CASILLAS_2024.csv", deltaCSV(g.deltaRows+g.cut*5, g.cut))
	}
}

// pueblaCut returns a real IEE Puebla 2024 governor database cut.
func pueblaCut(t *testing.T, hour string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "packager", "testdata", "puebla", "PUE_GUB_2024."+hour+".csv.zst"))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFileDeltaSeries pushes a series of cuts whose databases change by
// insertions, deletions, appends, shrinking and the real Puebla 18:00 to
// 20:00 update to real OpenSSH servers with copy-data (internal-sftp,
// chrooted internal-sftp, sftp-server) and without it (sftp-server with
// the request refused, gesftpserver). After every push each server serves
// exactly the signed cut; servers with copy-data got the changed files as
// ranges (few bytes sent), the others whole; a reader racing the pushes
// only ever sees whole cuts.
func TestFileDeltaSeries(t *testing.T) {
	opts := []sshdtest.Options{
		{},
		{Chroot: true},
		{ExtraConfig: []string{"Subsystem sftp /usr/lib/openssh/sftp-server"}},
		{ExtraConfig: []string{"Subsystem sftp /usr/lib/openssh/sftp-server -P copy-data"}},
	}
	if _, err := os.Stat("/usr/libexec/gesftpserver"); err == nil {
		opts = append(opts, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp /usr/libexec/gesftpserver"}})
	}
	copies := func(i int) bool { return i < 3 }
	e := newEnv(t, len(opts), opts...)
	eng := e.engine()

	base := deltaCSV(6000, 0) // about 290 KB
	mid := len(base) / 2
	mid = mid + bytes.IndexByte(base[mid:], '\n') + 1
	gub18, gub20 := pueblaCut(t, "1800"), pueblaCut(t, "2000")
	series := []struct {
		name     string
		casillas []byte
		gub      []byte
	}{
		{"first", base, gub18},
		{"insertion", concatBytes(base[:mid], deltaCSV(40, 3)[57:], base[mid:]), gub18},
		{"deletion", concatBytes(base[:mid/2], base[mid:]), gub18},
		{"append", concatBytes(base, deltaCSV(300, 5)[57:]), gub18},
		{"shrink", base[:len(base)/3], gub18},
		{"puebla 20:00", deltaCSV(6000, 7), gub20},
	}
	// Every version of every file, signed: a reader may see the new
	// version of a database under the old pointer (pointers switch last),
	// but never bytes that no cut has.
	signed := map[string]bool{}
	for _, c := range series {
		for _, d := range [][]byte{c.casillas, c.gub} {
			s := sha256.Sum256(d)
			signed[hex.EncodeToString(s[:])] = true
		}
	}
	web := e.servers[0].WebRoot()
	reader := startReader(func() (string, error) { return readWholeFiles(web, signed) })
	for k, cut := range series {
		writeSource(t, e.src, cut.name, map[string][]byte{
			"datos/PUE_CASILLAS_2024.csv": cut.casillas,
			"datos/PUE_GUB_2024.csv":      cut.gub,
		})
		res, err := e.store.Cut(context.Background(), packager.CutOptions{Source: e.src, Key: e.priv, Pointers: []string{"json/main.json"}, Keep: 10})
		if err != nil {
			t.Fatal(err)
		}
		nextSecond() // files staged in the second of the last ack are sent whole
		results := eng.Push(context.Background(), e.specs())
		requireOK(t, results, res.Info.Seq)
		var whole int64 // the changed files' sizes
		if k > 0 {
			for _, f := range [][2][]byte{{cut.casillas, series[k-1].casillas}, {cut.gub, series[k-1].gub}} {
				if !bytes.Equal(f[0], f[1]) {
					whole += int64(len(f[0]))
				}
			}
		}
		for i, s := range e.servers {
			e.checkTarget(s.WebRoot(), res.Info.Seq)
			r := results[i]
			t.Logf("%s, %s: %d files, %d bytes sent, %d files as ranges: %d literal, %d copied on the server",
				cut.name, r.Target, r.Files, r.Bytes, r.DeltaFiles, r.Literal, r.Copied)
			switch {
			case k == 0 && r.DeltaFiles != 0:
				t.Errorf("%s: first push staged %d files from ranges of nothing", r.Target, r.DeltaFiles)
			case k > 0 && copies(i) && (r.DeltaFiles == 0 || r.Copied == 0):
				t.Errorf("%s, %s: server offers copy-data but nothing was copied on it", cut.name, r.Target)
			case k > 0 && copies(i) && r.Bytes >= whole/2:
				t.Errorf("%s, %s: %d bytes sent, not much less than the changed files whole (%d)", cut.name, r.Target, r.Bytes, whole)
			case !copies(i) && (r.DeltaFiles != 0 || r.Copied != 0):
				t.Errorf("%s, %s: server without copy-data got %d files as ranges", cut.name, r.Target, r.DeltaFiles)
			}
		}
	}
	reader.finish(t, 3)
	if plans, took := eng.DeltaStats(); plans > 2*(len(series)-1) {
		t.Errorf("%d plans computed for %d cuts of 2 files on %d servers: plans are not shared", plans, len(series)-1, len(opts))
	} else {
		t.Logf("%d plans computed in %v for %d targets", plans, took, len(opts))
	}
}

// TestFileDeltaServedFileAlreadyNew checks the fallback when the served
// file is not the acknowledged version (here: an interrupted commit already
// renamed the new version into place, or someone changed it): prepcast
// notices before copying from it, sends the file whole, and the server
// serves the signed cut.
func TestFileDeltaServedFileAlreadyNew(t *testing.T) {
	e := newEnv(t, 1)
	eng := e.engine()
	web := e.servers[0].WebRoot()
	cut := func(name string, db []byte) int64 {
		writeSource(t, e.src, name, map[string][]byte{"datos/PUE_CASILLAS_2024.csv": db})
		res, err := e.store.Cut(context.Background(), packager.CutOptions{Source: e.src, Key: e.priv, Pointers: []string{"json/main.json"}, Keep: 10})
		if err != nil {
			t.Fatal(err)
		}
		return res.Info.Seq
	}
	first := cut("c1", deltaCSV(4000, 0))
	requireOK(t, eng.Push(context.Background(), e.specs()), first)
	for _, tc := range []struct {
		name   string
		served func(next []byte) []byte
	}{
		{"already the new version", func(next []byte) []byte { return next }},
		{"same size, other content", func(next []byte) []byte {
			cur, _ := os.ReadFile(filepath.Join(web, "datos", "PUE_CASILLAS_2024.csv"))
			return bytes.ReplaceAll(cur, []byte(",1,"), []byte(",9,"))
		}},
	} {
		next := deltaCSV(4000, len(tc.name))
		seq := cut(tc.name, next)
		p := filepath.Join(web, "datos", "PUE_CASILLAS_2024.csv")
		nextSecond() // changed after the ack, as by an interrupted later commit or by hand
		if err := os.WriteFile(p+".x", tc.served(next), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".x", p); err != nil {
			t.Fatal(err)
		}
		nextSecond()
		results := eng.Push(context.Background(), e.specs())
		requireOK(t, results, seq)
		e.checkTarget(web, seq)
		if results[0].DeltaFiles != 0 {
			t.Errorf("%s: the file was staged from ranges of a served file that is not the acknowledged version", tc.name)
		}
	}
}

func concatBytes(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// writeSource writes the files of a cut into the results tree, and
// json/main.json naming them with their SHA-256.
func writeSource(t *testing.T, root, id string, files map[string][]byte) {
	t.Helper()
	mj := mainJSON{Corte: id, Archivos: map[string]string{}}
	for rel, data := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		mj.Archivos[rel] = hex.EncodeToString(s[:])
	}
	data, _ := json.Marshal(mj)
	if err := os.MkdirAll(filepath.Join(root, "json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "json", "main.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readWholeFiles reads the pointer of a webroot and every file it names,
// and fails unless the pointer is whole and every file is one of the
// signed versions.
func readWholeFiles(web string, signed map[string]bool) (string, error) {
	data, err := os.ReadFile(filepath.Join(web, "json", "main.json"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil // before the first push
	}
	if err != nil {
		return "", err
	}
	var mj mainJSON
	if err := json.Unmarshal(data, &mj); err != nil {
		return "", errors.New("main.json is not whole JSON: " + err.Error())
	}
	for _, p := range sortedKeys(mj.Archivos) {
		b, err := os.ReadFile(filepath.Join(web, filepath.FromSlash(p)))
		if err != nil {
			return "", errors.New("main.json of " + mj.Corte + " names a missing file: " + err.Error())
		}
		s := sha256.Sum256(b)
		if !signed[hex.EncodeToString(s[:])] {
			return "", fmt.Errorf("%s holds %d bytes that no cut signed (pointer at %s)", p, len(b), mj.Corte)
		}
	}
	return strings.TrimSpace(mj.Corte), nil
}

// nextSecond waits until the clock's second changes: files the server
// writes afterwards are newer, by SFTP's whole-second times, than those
// written before.
func nextSecond() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
}
