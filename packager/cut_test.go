package packager

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// fixture returns the decompressed bytes of a file in testdata/puebla.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "puebla", name+".zst"))
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

func writeTree(t testing.TB, root string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type cutEnv struct {
	t     testing.TB
	src   string
	store *Store
	pub   ed25519.PublicKey
	priv  ed25519.PrivateKey
	clock time.Time
}

func newCutEnv(t testing.TB) *cutEnv {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &cutEnv{t: t, src: t.TempDir(), store: st, pub: pub, priv: priv,
		clock: time.Date(2024, 6, 3, 2, 0, 0, 0, time.UTC)}
}

func (e *cutEnv) opts() CutOptions {
	return CutOptions{Source: e.src, Key: e.priv, Pointers: []string{"json/main.json"}, Keep: 100, Package: true,
		Now: func() time.Time { e.clock = e.clock.Add(time.Minute); return e.clock }}
}

func (e *cutEnv) cut() *CutResult {
	e.t.Helper()
	res, err := e.store.Cut(context.Background(), e.opts())
	if err != nil {
		e.t.Fatalf("cut: %v", err)
	}
	return res
}

// checkStoredTree asserts that every file of cut seq is stored with exactly
// the bytes of want.
func (e *cutEnv) checkStoredTree(seq int64, want map[string][]byte) {
	e.t.Helper()
	m, _, _, err := e.store.VerifiedManifest(seq, e.pub)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(m.Entries) != len(want) {
		e.t.Fatalf("cut %d has %d files, want %d", seq, len(m.Entries), len(want))
	}
	for _, ent := range m.Entries {
		f, err := e.store.OpenObject(ent.SHA256)
		if err != nil {
			e.t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, want[ent.Path]) {
			e.t.Fatalf("cut %d: stored bytes of %s differ from the tree's", seq, ent.Path)
		}
		sum := sha256.Sum256(got)
		if hex.EncodeToString(sum[:]) != ent.SHA256 || int64(len(got)) != ent.Size {
			e.t.Fatalf("cut %d: %s: manifest entry does not match stored bytes", seq, ent.Path)
		}
	}
}

func TestCutRealPuebla1800To2000(t *testing.T) {
	e := newCutEnv(t)
	gub1800, gub2000 := fixture(t, "PUE_GUB_2024.1800.csv"), fixture(t, "PUE_GUB_2024.2000.csv")
	tree := map[string][]byte{
		"datos/PUE_GUB_2024.csv":              gub1800,
		"datos/PUE_GUB_Candidaturas_2024.csv": fixture(t, "PUE_GUB_Candidaturas_2024.csv"),
		"json/main.json":                      []byte(`{"corte":"20240603_1800"}`),
	}
	writeTree(t, e.src, tree)
	time.Sleep(racyWindow + 100*time.Millisecond) // let the quick check trust these files next time
	r1 := e.cut()
	if r1.Info.Seq != 1 || r1.Info.Files != 3 || r1.Hashed != 3 {
		t.Fatalf("first cut: %+v hashed %d", r1.Info, r1.Hashed)
	}
	e.checkStoredTree(1, tree)

	tree["datos/PUE_GUB_2024.csv"] = gub2000
	writeTree(t, e.src, map[string][]byte{"datos/PUE_GUB_2024.csv": gub2000})
	r2 := e.cut()
	if r2.Info.Seq != 2 {
		t.Fatalf("second cut seq %d", r2.Info.Seq)
	}
	if r2.Hashed != 1 || r2.Info.DeltaFiles != 1 || r2.Info.DeltaBytes != int64(len(gub2000)) || r2.Info.DeletedFiles != 0 {
		t.Fatalf("delta 18:00 -> 20:00: hashed %d, %d files, %d bytes; want exactly the GUB file (%d bytes)",
			r2.Hashed, r2.Info.DeltaFiles, r2.Info.DeltaBytes, len(gub2000))
	}
	e.checkStoredTree(2, tree)
	// The IEE's bytes survive untouched: BOM, apostrophes, SIN DATO cells.
	if !bytes.HasPrefix(gub2000, []byte("\xef\xbb\xbfGUBERNATURA\n03/06/2024 20:00 (UTC-6)")) ||
		!bytes.Contains(gub2000, []byte("'")) || !bytes.Contains(gub2000, []byte("SIN DATO")) {
		t.Fatal("fixture is not the IEE layout this test expects")
	}
	m1, mb1, _ := e.store.Manifest(1)
	m2, _, _ := e.store.Manifest(2)
	if m2.Prev != Hash(mb1) {
		t.Error("cut 2 is not chained to cut 1's manifest")
	}
	d := ComputeDelta(m1, m2)
	if len(d.Changed) != 1 || d.Changed[0].Path != "datos/PUE_GUB_2024.csv" {
		t.Errorf("ComputeDelta = %+v", d.Changed)
	}
	// The package of cut 2 carries exactly that file, verified and intact.
	var got map[string][]byte = map[string][]byte{}
	ci, _ := e.store.Info(2)
	f, err := e.store.OpenPackage(ci.PackageFrom, 2, FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	pc, err := ReadPackage(io.TeeReader(f, h), e.pub, storeBase(e.store), nil, func(ent Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[ent.Path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(h, f)
	if hex.EncodeToString(h.Sum(nil)) != ci.PackageSHA256 {
		t.Error("package SHA-256 does not match cut.json")
	}
	if pc.Delta.FromSeq != 1 || len(got) != 1 || !bytes.Equal(got["datos/PUE_GUB_2024.csv"], gub2000) {
		t.Errorf("package from %d holds %d files", pc.Delta.FromSeq, len(got))
	}
	// It carries the 20:00 database as a delta against the 18:00 one
	// (about 18 KB against 0.8 MB compressed alone); the whole-files
	// package, for an apply without deltas, is only compressed.
	whole, err := e.store.OpenPackage(1, 2, WholeFiles)
	if err != nil {
		t.Fatal(err)
	}
	whole.Close()
	if ci.PackageSize > 64<<10 || whole.Size() > int64(len(gub2000))/3 || whole.Size() < 10*ci.PackageSize {
		t.Errorf("package of the 20:00 database: %d bytes with deltas, %d whole, for %d bytes of CSV", ci.PackageSize, whole.Size(), len(gub2000))
	}
	t.Logf("package of the 20:00 database: %d bytes with deltas, %d whole, for %d bytes of CSV", ci.PackageSize, whole.Size(), len(gub2000))
}

func TestCutUnchangedTreeIsNoChange(t *testing.T) {
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("{}"), "a/b.jpg": bytes.Repeat([]byte{1}, 5000)})
	e.cut()
	time.Sleep(racyWindow + 100*time.Millisecond) // let the quick check trust the files
	if r := e.cut(); !r.NoChange || r.Hashed != 2 {
		t.Fatalf("files too recent for the quick check must be hashed again: %+v", r)
	}
	r := e.cut()
	if !r.NoChange || r.Hashed != 0 {
		t.Fatalf("unchanged tree: NoChange=%v hashed=%d", r.NoChange, r.Hashed)
	}
	seqs, _ := e.store.Seqs()
	if len(seqs) != 1 {
		t.Fatalf("unchanged tree made cuts: %v", seqs)
	}
	o := e.opts()
	o.AllowEmpty = true
	r2, err := e.store.Cut(context.Background(), o)
	if err != nil || r2.NoChange || r2.Info.Seq != 2 || r2.Info.DeltaFiles != 0 {
		t.Fatalf("--allow-empty: %+v %v", r2, err)
	}
	o.Rehash = true
	o.AllowEmpty = false
	r3, err := e.store.Cut(context.Background(), o)
	if err != nil || !r3.NoChange || r3.Hashed != 2 {
		t.Fatalf("--rehash: %+v %v", r3, err)
	}
}

func TestCutDetectsSameSizeRewrite(t *testing.T) {
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(`{"corte":1}`)})
	e.cut()
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(`{"corte":2}`)})
	r := e.cut()
	if r.NoChange || r.Info.DeltaFiles != 1 {
		t.Fatalf("a same-size rewrite was missed: %+v", r.Info)
	}
}

func TestCutRefusesBadTrees(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
		want  string
	}{
		{"symlink to /etc", func(t *testing.T, root string) {
			os.Symlink("/etc", filepath.Join(root, "json", "etc"))
		}, `json/etc: is a symbolic link`},
		{"symlink to file", func(t *testing.T, root string) {
			os.Symlink("/etc/passwd", filepath.Join(root, "json", "p.json"))
		}, `json/p.json: is a symbolic link`},
		{"fifo", func(t *testing.T, root string) {
			if err := syscall.Mkfifo(filepath.Join(root, "json", "pipe"), 0o644); err != nil {
				t.Skip(err)
			}
		}, `json/pipe: is not a regular file (a FIFO)`},
		{"non-utf8 name", func(t *testing.T, root string) {
			os.WriteFile(filepath.Join(root, "json", "a\xff.json"), nil, 0o644)
		}, `not valid UTF-8`},
		{"control character", func(t *testing.T, root string) {
			os.WriteFile(filepath.Join(root, "json", "a\nb.json"), nil, 0o644)
		}, `control character`},
		{"backslash", func(t *testing.T, root string) {
			os.WriteFile(filepath.Join(root, "json", `..\x`), nil, 0o644)
		}, `backslash`},
		{"reserved dir", func(t *testing.T, root string) {
			writeTree(t, root, map[string][]byte{".prepcast/ack.json": []byte("{}")})
		}, `.prepcast`},
		{"reserved public proof dir", func(t *testing.T, root string) {
			writeTree(t, root, map[string][]byte{".well-known/prepcast/index.json": []byte("{}")})
		}, `.well-known/prepcast/`},
		{"unreadable", func(t *testing.T, root string) {
			p := filepath.Join(root, "json", "secret.json")
			os.WriteFile(p, []byte("x"), 0o000)
			if os.Getuid() == 0 {
				// root reads anything; make a directory unreadable instead via a FIFO-free trick
				t.Skip("running as root: permission bits do not stop reads")
			}
		}, `secret.json`},
		{"missing pointer", func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "json", "main.json"))
		}, `no pointer file json/main.json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCutEnv(t)
			writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("{}")})
			tt.setup(t, e.src)
			_, err := e.store.Cut(context.Background(), e.opts())
			if err == nil {
				t.Fatal("cut accepted a bad tree")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if seqs, _ := e.store.Seqs(); len(seqs) != 0 {
				t.Fatalf("a cut was made: %v", seqs)
			}
		})
	}
	t.Run("missing source", func(t *testing.T) {
		e := newCutEnv(t)
		o := e.opts()
		o.Source = filepath.Join(e.src, "nope")
		_, err := e.store.Cut(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("missing source: %v", err)
		}
	})
}

func TestCutZeroByteAndDeletedFiles(t *testing.T) {
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("{}"), "empty.txt": {}, "20240602_2000_PREP_PUE.zip": []byte("zip1")})
	e.cut()
	os.Remove(filepath.Join(e.src, "20240602_2000_PREP_PUE.zip"))
	writeTree(t, e.src, map[string][]byte{"20240602_2015_PREP_PUE.zip": []byte("zip2")})
	r := e.cut()
	if r.Info.DeltaFiles != 1 || r.Info.DeletedFiles != 1 {
		t.Fatalf("delta: %+v", r.Info)
	}
	e.checkStoredTree(2, map[string][]byte{"json/main.json": []byte("{}"), "empty.txt": {}, "20240602_2015_PREP_PUE.zip": []byte("zip2")})
}

func TestCutFileChangingWhileRead(t *testing.T) {
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("{}")})
	big := filepath.Join(e.src, "datos", "big.csv")
	writeTree(t, e.src, map[string][]byte{"datos/big.csv": bytes.Repeat([]byte("x,"), 8<<20)})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a generator that keeps appending to the file
		defer close(done)
		f, _ := os.OpenFile(big, os.O_WRONLY|os.O_APPEND, 0)
		defer f.Close()
		for {
			select {
			case <-stop:
				return
			default:
				f.Write([]byte("y\n"))
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	_, err := e.store.Cut(context.Background(), e.opts())
	close(stop)
	<-done
	if !errors.Is(err, ErrSourceChanging) || !strings.Contains(err.Error(), "datos/big.csv") {
		t.Fatalf("cut of a file being written: %v", err)
	}
	if seqs, _ := e.store.Seqs(); len(seqs) != 0 {
		t.Fatalf("a cut was made from a changing file: %v", seqs)
	}
	// Once the generator stops, the cut succeeds and stores exactly what is there.
	data, _ := os.ReadFile(big)
	e.cut()
	e.checkStoredTree(1, map[string][]byte{"json/main.json": []byte("{}"), "datos/big.csv": data})
}

func TestPruneKeepsWhatTargetsNeed(t *testing.T) {
	e := newCutEnv(t)
	for i := 1; i <= 5; i++ {
		writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(fmt.Sprintf(`{"corte":%d}`, i)),
			fmt.Sprintf("actas/%d.jpg", i): bytes.Repeat([]byte{byte(i)}, 1000)})
		e.cut()
	}
	// A package of cut 2 from nothing, built on demand, besides its own.
	if _, err := packageInfo(e.store, 0, 2); err != nil {
		t.Fatal(err)
	}
	st, err := e.store.Prune(2, map[int64]bool{1: true, 2: true})
	if err != nil {
		t.Fatal(err)
	}
	seqs, _ := e.store.Seqs()
	if fmt.Sprint(seqs) != "[1 2 4 5]" {
		t.Fatalf("after prune: cuts %v, want [1 2 4 5]", seqs)
	}
	if st.Cuts != 1 || st.Packages != 3 {
		t.Errorf("prune stats %+v", st)
	}
	for _, seq := range []int64{1, 2} {
		if m, _ := filepath.Glob(filepath.Join(e.store.CutDir(seq), "from-*")); len(m) != 0 {
			t.Errorf("protected cut %d keeps packages whose objects are gone: %v", seq, m)
		}
	}
	if _, _, err := e.store.Manifest(1); err != nil {
		t.Errorf("protected cut lost its manifest: %v", err)
	}
	// Every object of the kept cuts is still there; the main.json of cut 1 is not.
	for _, seq := range []int64{4, 5} {
		m, _, _ := e.store.Manifest(seq)
		for _, ent := range m.Entries {
			if _, err := os.Stat(e.store.ObjectPath(ent.SHA256)); err != nil {
				t.Errorf("cut %d lost %s", seq, ent.Path)
			}
		}
	}
	m1, _, _ := e.store.Manifest(1)
	if ent, _ := m1.Lookup("json/main.json"); fileExists(e.store.ObjectPath(ent.SHA256)) {
		t.Error("an object no kept cut needs was not pruned")
	}
	// The next cut after pruning still works and chains to cut 5.
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(`{"corte":6}`)})
	if r := e.cut(); r.Info.Seq != 6 {
		t.Fatalf("cut after prune: seq %d", r.Info.Seq)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestCutKilledMidway kills a child process running a cut at several moments
// and checks that the store never lists a half cut and the next cut works.
func TestCutKilledMidway(t *testing.T) {
	if os.Getenv("PREPCAST_CUT_CHILD") != "" {
		return
	}
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	e := newCutEnv(t)
	files := map[string][]byte{"json/main.json": []byte("{}")}
	for i := 0; i < 200; i++ {
		files[fmt.Sprintf("actas/%03d.jpg", i)] = bytes.Repeat([]byte{byte(i)}, 64<<10)
	}
	writeTree(t, e.src, files)
	keyDir := t.TempDir()
	privPath, _, err := GenerateKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := LoadPrivateKey(privPath)
	pub := priv.Public().(ed25519.PublicKey)
	for i, delay := range []time.Duration{2, 10, 30, 60, 120} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCutChild$")
		cmd.Env = append(os.Environ(), "PREPCAST_CUT_CHILD=1", "CUT_SRC="+e.src, "CUT_STATE="+filepath.Dir(e.store.Dir()), "CUT_KEY="+privPath)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		// Whatever the moment, every listed cut is whole and verifies.
		seqs, err := e.store.Seqs()
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range seqs {
			if _, _, _, err := e.store.VerifiedManifest(seq, pub); err != nil {
				t.Fatalf("kill %d after %v: cut %d is broken: %v", i, delay, seq, err)
			}
			// The package comes after the commit: a listed one is whole, and
			// one the kill prevented is built when asked for.
			ci, _ := e.store.Info(seq)
			if ci.Package != "" {
				if _, err := os.Stat(e.store.PackagePath(ci)); err != nil {
					t.Fatalf("kill %d: cut %d lists a package that is missing: %v", i, seq, err)
				}
			}
			f, err := e.store.OpenPackage(seq-1, seq, FileDeltas)
			if err != nil {
				t.Fatalf("kill %d: cut %d: %v", i, seq, err)
			}
			if ci.Package != "" && f.Size() != ci.PackageSize {
				t.Fatalf("kill %d: cut %d lists a package of %d bytes, its index holds %d", i, seq, ci.PackageSize, f.Size())
			}
			_, err = ReadPackage(f, pub, storeBase(e.store), nil, nil)
			f.Close()
			if err != nil {
				t.Fatalf("kill %d: cut %d: package: %v", i, seq, err)
			}
		}
		writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	o := e.opts()
	o.Key = priv
	res, err := e.store.Cut(context.Background(), o)
	if err != nil {
		t.Fatalf("cut after kills: %v", err)
	}
	e.pub = pub
	files["json/main.json"] = []byte(`{"n":4}`)
	e.checkStoredTree(res.Info.Seq, files)
}

// TestCutChild is the body of the child process of TestCutKilledMidway.
func TestCutChild(t *testing.T) {
	if os.Getenv("PREPCAST_CUT_CHILD") == "" {
		t.Skip("child process of TestCutKilledMidway")
	}
	st, err := OpenStore(os.Getenv("CUT_STATE"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadPrivateKey(os.Getenv("CUT_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Cut(context.Background(), CutOptions{Source: os.Getenv("CUT_SRC"), Key: key, Pointers: []string{"json/main.json"}, Rehash: true, Package: true})
	if err != nil {
		t.Fatal(err)
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(priv)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	if _, _, err := GenerateKey(dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("keygen overwrote a key: %v", err)
	}
	k, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pub)
	if err != nil || !p.Equal(k.Public()) {
		t.Fatalf("public key does not match: %v", err)
	}
	os.Chmod(priv, 0o644)
	if _, err := LoadPrivateKey(priv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key was accepted: %v", err)
	}
}

// A clock that jumps back never makes a cut older than the one before it.
func TestCutClockJumpBack(t *testing.T) {
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("1")})
	r1 := e.cut()
	e.clock = e.clock.Add(-3 * time.Hour) // the clock jumps back
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("2")})
	r2 := e.cut()
	if r2.Info.Created.Before(r1.Info.Created) || r2.Info.ID < r1.Info.ID || r2.Info.Seq != 2 {
		t.Fatalf("cut after a clock jump back: %+v after %+v", r2.Info, r1.Info)
	}
}

// Cuts made in the same minute, and in the same second, get distinct ids
// that sort as the cuts do and name the second they were made.
func TestCutIDsUniqueWithinAMinute(t *testing.T) {
	e := newCutEnv(t)
	at := time.Date(2024, 6, 3, 2, 10, 7, 0, time.UTC)
	times := []time.Time{at, at.Add(20 * time.Second), at.Add(20 * time.Second), at.Add(20*time.Second + 300*time.Millisecond)}
	var ids []string
	for i, now := range times {
		writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(fmt.Sprint(i))})
		o := e.opts()
		o.Now = func() time.Time { return now }
		res, err := e.store.Cut(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Info.ID)
	}
	want := []string{"20240602_201007", "20240602_201027", "20240602_201028", "20240602_201029"} // America/Mexico_City, the default zone
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("ids %v, want %v", ids, want)
		}
	}
	cuts, err := e.store.Cuts()
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cuts {
		if _, _, _, err := e.store.VerifiedManifest(c.Seq, e.pub); err != nil {
			t.Fatalf("cut %d: %v", c.Seq, err)
		}
		if i > 0 && c.ID <= cuts[i-1].ID {
			t.Fatalf("ids do not sort as cuts: %s after %s", c.ID, cuts[i-1].ID)
		}
	}
}

// A manifest made before ids had seconds (YYYYMMDD_HHMM) still verifies,
// and its id sorts before the ids of later minutes.
func TestLegacyCutIDStillValid(t *testing.T) {
	m := testManifest(t, 1, Entry{"json/main.json", 10, sha('1')})
	m.ID = m.Created.Format(LegacyIDLayout)
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseManifest(data); err != nil {
		t.Fatalf("legacy id %s refused: %v", m.ID, err)
	}
	later := m.Created.Add(time.Minute).Format(IDLayout)
	if !(m.ID < later) {
		t.Fatalf("legacy id %s does not sort before %s", m.ID, later)
	}
}

// A file of more than 2 GiB (sizes past 32 bits) is cut like any other.
func TestCutFileOver2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 GiB")
	}
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte("{}")})
	big := filepath.Join(e.src, "datos", "big.bin")
	os.MkdirAll(filepath.Dir(big), 0o755)
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2<<30 + 12345
	if err := f.Truncate(size); err != nil { // sparse: reads as zeros
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), size-3)
	f.Close()
	r := e.cut()
	m, _, _ := e.store.Manifest(r.Info.Seq)
	ent, ok := m.Lookup("datos/big.bin")
	if !ok || ent.Size != size {
		t.Fatalf("entry %+v", ent)
	}
	h := sha256.New()
	obj, err := e.store.OpenObject(ent.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if n, _ := io.Copy(h, obj); n != size || hex.EncodeToString(h.Sum(nil)) != ent.SHA256 {
		t.Fatalf("stored object: %d bytes", n)
	}
}
