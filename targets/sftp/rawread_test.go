package sftp

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/targets"
)

// TestPipelinedReads checks reads and listings on the pipelined session of
// a real OpenSSH server (it offers copy-data, so ReadFileMax and Walk take
// that path once the session is open): exact content at sizes around the read-ahead, bounds that
// hold against a large file and a link to /dev/zero, a directory listed
// over several replies (OpenSSH sends 100 names at most in each), links
// reported and never followed, and a missing directory.
func TestPipelinedReads(t *testing.T) {
	tg, s := sshdTarget(t, sshdtest.Options{})
	ctx := t.Context()
	if err := tg.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if !tg.pipelines(ctx) { // waits for the pipelined session, which reads take once it is open
		t.Skip("this OpenSSH offers no copy-data: the pipelined session is not used")
	}
	root := s.Root()
	for _, n := range []int{0, 1, 32<<10 - 1, 32 << 10, 32<<10 + 1, 100_000} {
		data := bytes.Repeat([]byte{byte(n)}, n)
		name := fmt.Sprintf("f%d.json", n)
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := tg.ReadFileMax(ctx, name, int64(n))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s at its bound: %d bytes, %v", name, len(got), err)
		}
		if n > 0 {
			if _, err := tg.ReadFileMax(ctx, name, int64(n-1)); !errors.Is(err, targets.ErrTooLarge) || !targets.IsPermanent(err) {
				t.Errorf("%s with a bound one byte short: %v, want a permanent ErrTooLarge", name, err)
			}
		}
	}
	if err := os.Symlink("/dev/zero", filepath.Join(root, "zero.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.ReadFileMax(ctx, "zero.json", 100_000); !errors.Is(err, targets.ErrTooLarge) {
		t.Errorf("a link to /dev/zero: %v, want ErrTooLarge", err)
	}
	if _, err := tg.ReadFileMax(ctx, "missing.json", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}

	// A directory of 250 files and a subdirectory, and links.
	dir := filepath.Join(root, "actas")
	var want []string
	for i := range 250 {
		p := filepath.Join(dir, fmt.Sprintf("acta-%03d.jpg", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("actas/acta-%03d.jpg", i))
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "x.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("no"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "actas/link", "actas/sub/x.json")
	slices.Sort(want)
	var got []string
	links := map[string]bool{}
	err := tg.Walk(ctx, "actas", func(fi targets.FileInfo) error {
		got = append(got, fi.Path)
		links[fi.Path] = fi.Symlink
		if fi.Path == "actas/acta-007.jpg" && (fi.Size != 1 || fi.ModTime.IsZero()) {
			t.Errorf("%s: size %d, time %v; want 1 byte and a time", fi.Path, fi.Size, fi.ModTime)
		}
		return nil
	})
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("walk: %v\n got %d names, want %d: %v", err, len(got), len(want), got[:min(len(got), 5)])
	}
	if !links["actas/link"] || links["actas/acta-000.jpg"] {
		t.Errorf("links reported %v", links)
	}
	// A link named as the directory to walk is reported, not listed.
	got = nil
	if err := tg.Walk(ctx, "linkdir", func(fi targets.FileInfo) error {
		got = append(got, fi.Path)
		if !fi.Symlink {
			t.Errorf("%s: not reported as a link", fi.Path)
		}
		return nil
	}); err != nil || !slices.Equal(got, []string{"linkdir"}) {
		t.Errorf("walk of a link to a directory: %v, %v; want the link alone", got, err)
	}
	if err := tg.Walk(ctx, "missing", func(targets.FileInfo) error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("walk of a missing directory: %v, want fs.ErrNotExist", err)
	}
}
