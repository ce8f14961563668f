package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A completed write replaces the file with its mode and leaves nothing
// else; a failed one leaves the old content and nothing else.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "main.json")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(p, []byte("new"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, false, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("a failed write changed the file: %q", b)
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Fatalf("%d entries left, want 1", len(des))
	}
}
