package sysfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockIsExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := Lock(a, false); err != nil {
		t.Fatal(err)
	}
	if err := Lock(b, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	a.Close()
	if err := Lock(b, false); err != nil {
		t.Fatalf("lock after the holder closed: %v", err)
	}
}

func TestNoFollowAndStatAt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hola"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenNoFollow(filepath.Join(dir, "l")); err == nil {
		f.Close()
		t.Fatal("OpenNoFollow followed a link")
	}
	f, err := OpenNoFollow(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncFile(f); err != nil {
		t.Errorf("SyncFile: %v", err)
	}
	f.Close()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := StatAt(d, "f")
	if err != nil || !st.Regular || st.Size != 4 || st.MTime == 0 {
		t.Errorf("StatAt(f) = %+v, %v", st, err)
	}
	if st, err := StatAt(d, "l"); err != nil || st.Regular {
		t.Errorf("StatAt(l) = %+v, %v: a link must not count as a regular file", st, err)
	}
	if free, err := FreeSpace(d); err != nil || free <= 0 {
		t.Errorf("FreeSpace = %d, %v", free, err)
	}
	if NoSpace(errors.New("other")) != "" {
		t.Error("NoSpace took an unrelated error for a full disk")
	}
}
