package packager

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readPackageFiles reads the package from cut from to cut to with full
// checks and returns its delta and files.
func readPackageFiles(t *testing.T, e *cutEnv, from, to int64) (DeltaInfo, map[string][]byte) {
	t.Helper()
	f, err := e.store.OpenPackage(from, to, FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]byte{}
	pc, err := ReadPackage(f, e.pub, storeBase(e.store), nil, func(ent Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[ent.Path] = b
		return err
	})
	if err != nil {
		t.Fatalf("package from %d to %d: %v", from, to, err)
	}
	return pc.Delta, got
}

func TestPackageFromAnyOriginBuiltOnceAndRebuiltWhenLost(t *testing.T) {
	e := newCutEnv(t)
	trees := []map[string][]byte{
		{"json/main.json": []byte(`{"c":1}`), "actas/1.jpg": bytes.Repeat([]byte{1}, 5000), "datos/a.csv": []byte("a,1\n")},
		{"json/main.json": []byte(`{"c":2}`), "actas/1.jpg": bytes.Repeat([]byte{1}, 5000), "actas/2.jpg": bytes.Repeat([]byte{2}, 7000), "datos/a.csv": []byte("a,2\n")},
		{"json/main.json": []byte(`{"c":3}`), "actas/1.jpg": bytes.Repeat([]byte{1}, 5000), "actas/2.jpg": bytes.Repeat([]byte{2}, 7000), "actas/3.jpg": bytes.Repeat([]byte{3}, 9000), "datos/a.csv": []byte("a,3\n")},
	}
	for _, tree := range trees {
		os.RemoveAll(e.src)
		writeTree(t, e.src, tree)
		e.cut()
	}
	// The cut's own package (from cut 2) is the one returned for origin 2.
	ci, _ := e.store.Info(3)
	if ci.Package != PackageName(2, FileDeltas) || ci.PackageSize == 0 {
		t.Fatalf("cut 3 lists package %q (%d bytes)", ci.Package, ci.PackageSize)
	}
	info, err := packageInfo(e.store, 2, 3)
	if err != nil || info.Size != ci.PackageSize || info.SHA256 != ci.PackageSHA256 {
		t.Fatalf("Package(2, 3) = %+v, %v; cut.json says %d bytes, %s", info, err, ci.PackageSize, ci.PackageSHA256)
	}
	// From cut 1 and from nothing: built on demand, with the right files.
	for _, tt := range []struct {
		from  int64
		files []string
	}{
		{1, []string{"actas/2.jpg", "actas/3.jpg", "datos/a.csv", "json/main.json"}},
		{0, []string{"actas/1.jpg", "actas/2.jpg", "actas/3.jpg", "datos/a.csv", "json/main.json"}},
	} {
		if _, err := packageInfo(e.store, tt.from, 3); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(e.store.CutDir(3), PackageName(tt.from, FileDeltas))
		d, got := readPackageFiles(t, e, tt.from, 3)
		if d.FromSeq != tt.from || d.ToSeq != 3 || len(got) != len(tt.files) {
			t.Fatalf("package from %d: delta %+v, %d files", tt.from, d, len(got))
		}
		for _, f := range tt.files {
			if !bytes.Equal(got[f], trees[2][f]) {
				t.Fatalf("package from %d: %s differs", tt.from, f)
			}
		}
		st1, err := os.Stat(p)
		if err != nil {
			t.Fatalf("package from %d not kept: %v", tt.from, err)
		}
		if _, err := packageInfo(e.store, tt.from, 3); err != nil {
			t.Fatal(err)
		} else if st2, _ := os.Stat(p); !os.SameFile(st1, st2) {
			t.Fatal("second call rebuilt the package")
		}
	}
	// Discarded (as after a difusor refused it), the cut's own package is
	// built again with the same content.
	want := readStream(t, e.store, 2, 3)
	if err := e.store.DiscardPackage(2, 3, FileDeltas); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.store.PackagePath(ci)); !os.IsNotExist(err) {
		t.Fatalf("discarded package still stored: %v", err)
	}
	if got := readStream(t, e.store, 2, 3); !bytes.Equal(got, want) {
		t.Fatal("rebuilt package differs from the original")
	}
	if _, err := packageInfo(e.store, 3, 3); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("Package(3, 3) err = %v", err)
	}
}

func TestCutWithoutPackageBuildsNone(t *testing.T) {
	e := newCutEnv(t)
	writeTree(t, e.src, map[string][]byte{"json/main.json": []byte(`{"c":1}`), "actas/1.jpg": bytes.Repeat([]byte{1}, 5000)})
	o := e.opts()
	o.Package = false
	res, err := e.store.Cut(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Info.Package != "" {
		t.Fatalf("cut without Package lists package %q", res.Info.Package)
	}
	if m, _ := filepath.Glob(filepath.Join(e.store.CutDir(res.Info.Seq), "from-*")); len(m) != 0 {
		t.Fatalf("package files written: %v", m)
	}
	// Asked for later, it is built from the objects.
	if _, got := readPackageFiles(t, e, 0, res.Info.Seq); len(got) != 2 {
		t.Fatalf("package holds %d files", len(got))
	}
}

// readStream returns the whole package stream from cut from to cut to.
func readStream(t *testing.T, s *Store, from, to int64) []byte {
	t.Helper()
	r, err := s.OpenPackage(from, to, FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != r.Size() {
		t.Fatalf("stream of %d bytes, its index says %d", len(b), r.Size())
	}
	return b
}

// packageInfo makes sure the package from cut from to cut to is stored and
// returns what its index records.
func packageInfo(s *Store, from, to int64) (PackageInfo, error) {
	r, err := s.OpenPackage(from, to, FileDeltas)
	if err != nil {
		return PackageInfo{}, err
	}
	defer r.Close()
	return r.Info(), nil
}

// storeBase returns the bases of delta members from the store's objects.
func storeBase(s *Store) func(path, sha string) ([]byte, error) {
	return func(_, sha string) ([]byte, error) {
		f, err := s.OpenObject(sha)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(f)
	}
}
