package localfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// linkingTarget adds the symbolic links the conformance suite needs, as
// relative links (os.Root refuses to follow absolute ones).
type linkingTarget struct{ *Target }

func (l linkingTarget) Symlink(ctx context.Context, oldname, newname string) error {
	rel, err := filepath.Rel(path.Dir(newname), oldname)
	if err != nil {
		return err
	}
	return l.root.Symlink(rel, newname)
}

func newTarget(t *testing.T, dir string) *Target {
	t.Helper()
	tg, err := New("local", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tg.Close() })
	return tg
}

func TestConformance(t *testing.T) {
	targettest.Run(t, func(t *testing.T) targets.Target {
		return linkingTarget{newTarget(t, t.TempDir())}
	})
}

func TestNew(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, root string }{
		{"", t.TempDir()},
		{"x", filepath.Join(t.TempDir(), "missing")},
		{"x", file},
	} {
		if _, err := New(tc.name, tc.root); err == nil || !targets.IsPermanent(err) {
			t.Errorf("New(%q, %q) error = %v, want a permanent error", tc.name, tc.root, err)
		}
	}
}

// TestSymlinkEscape checks that links inside the root that point outside it
// are never followed: an operation through one fails permanently, and one on
// the link itself touches only the link.
func TestSymlinkEscape(t *testing.T) {
	ctx := t.Context()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, secret)
	if err != nil {
		t.Fatal(err)
	}
	for old, link := range map[string]string{
		outside: "dlink",   // absolute, to a directory
		rel:     "flink",   // relative, to a file
		secret:  "abslink", // absolute, to a file
	} {
		if err := os.Symlink(old, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	tg := newTarget(t, dir)
	expectPermanent := func(op string, err error) {
		t.Helper()
		if err == nil || !targets.IsPermanent(err) {
			t.Errorf("%s through a link leading outside: error = %v, want a permanent error", op, err)
		}
	}
	for _, p := range []string{"flink", "abslink", "dlink/secret", "dlink/new"} {
		expectPermanent("WriteFile("+p+")", tg.WriteFile(ctx, p, strings.NewReader("evil"), 4))
		expectPermanent("WriteFileNoSync("+p+")", tg.WriteFileNoSync(ctx, p, strings.NewReader("evil"), 4))
	}
	for _, p := range []string{"flink", "abslink", "dlink/secret"} {
		_, err := tg.ReadFile(ctx, p)
		expectPermanent("ReadFile("+p+")", err)
		expectPermanent("SyncFiles("+p+")", tg.SyncFiles(ctx, []string{p}))
	}
	expectPermanent("MkdirAll(dlink/sub)", tg.MkdirAll(ctx, "dlink/sub"))
	expectPermanent("Walk(dlink/x)", tg.Walk(ctx, "dlink/x", func(targets.FileInfo) error { return nil }))

	var seen []string
	err = tg.Walk(ctx, "", func(fi targets.FileInfo) error {
		seen = append(seen, fi.Path)
		if !fi.Symlink {
			t.Errorf("Walk reports %s as a regular file", fi.Path)
		}
		return nil
	})
	slices.Sort(seen)
	if want := []string{"abslink", "dlink", "flink"}; err != nil || !slices.Equal(seen, want) {
		t.Errorf("Walk = %v, %v; want only the links %v", seen, err, want)
	}

	// Renaming a link moves the link; renaming onto a link replaces it.
	if err := tg.Rename(ctx, "flink", "moved"); err != nil {
		t.Fatalf("Rename of a link: %v", err)
	}
	if err := tg.WriteFile(ctx, "new", strings.NewReader("new"), 3); err != nil {
		t.Fatal(err)
	}
	if err := tg.Rename(ctx, "new", "abslink"); err != nil {
		t.Fatalf("Rename onto a link: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "moved")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("after Rename(flink, moved), moved is %v, %v; want the link", fi, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "abslink")); err != nil || string(got) != "new" {
		t.Errorf("after Rename(new, abslink), abslink holds %q, %v; want the new file", got, err)
	}
	if err := tg.RemoveAll(ctx, "dlink"); err != nil {
		t.Fatalf("RemoveAll of a link to a directory outside: %v", err)
	}
	if err := tg.Remove(ctx, "moved"); err != nil {
		t.Fatalf("Remove of a link to a file outside: %v", err)
	}
	if got, err := os.ReadFile(secret); err != nil || string(got) != "secret" {
		t.Errorf("the file outside the root holds %q, %v; want it untouched", got, err)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 1 {
		t.Errorf("the directory outside the root holds %v, %v; want only secret", entries, err)
	}
}

func TestRefusesDotDot(t *testing.T) {
	ctx := t.Context()
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, dir)
	for _, p := range []string{"../x", "a/../../x", "..", ".prepcast/../../x"} {
		for op, err := range map[string]error{
			"WriteFile":       tg.WriteFile(ctx, p, strings.NewReader("x"), 1),
			"WriteFileNoSync": tg.WriteFileNoSync(ctx, p, strings.NewReader("x"), 1),
			"SyncFiles":       tg.SyncFiles(ctx, []string{"ok", p}),
			"MkdirAll":        tg.MkdirAll(ctx, p),
		} {
			if !targets.IsPermanent(err) || !errors.Is(err, safepath.ErrInvalid) {
				t.Errorf("%s(%q): error = %v, want a permanent error wrapping safepath.ErrInvalid", op, p, err)
			}
		}
	}
	if entries, err := os.ReadDir(parent); err != nil || len(entries) != 1 {
		t.Errorf("the root's parent holds %v, %v; want only the root", entries, err)
	}
}

// chunkReader returns its data a little at a time, then err.
type chunkReader struct {
	data []byte
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p[:min(len(p), 1000)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func TestShortSource(t *testing.T) {
	ctx := t.Context()
	tg := newTarget(t, t.TempDir())
	writes := map[string]func(context.Context, string, io.Reader, int64) error{
		"WriteFile":       tg.WriteFile,
		"WriteFileNoSync": tg.WriteFileNoSync,
	}
	for name, write := range writes {
		for _, n := range []int{0, 5000, bufSize + 10} {
			r := &chunkReader{data: make([]byte, n), err: io.EOF}
			err := write(ctx, "short.bin", r, int64(n)+1)
			if err == nil || !targets.IsPermanent(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s of %d bytes from a %d-byte source: error = %v, want a permanent error wrapping io.ErrUnexpectedEOF", name, n+1, n, err)
			}
		}
		if err := write(ctx, "short.bin", strings.NewReader("x"), -1); !targets.IsPermanent(err) {
			t.Errorf("%s with a negative size: error = %v, want a permanent error", name, err)
		}
	}
}

func TestWriteFileBigAndMode(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	tg := newTarget(t, dir)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*bufSize+17)/16)
	if err := tg.WriteFile(ctx, "big.bin", &chunkReader{data: slices.Clone(data), err: io.EOF}, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "big.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("big.bin holds %d bytes, %v; want the %d written", len(got), err, len(data))
	}
	if fi, err := os.Stat(filepath.Join(dir, "big.bin")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("big.bin has mode %v, %v; want 0644 whatever the umask", fi.Mode(), err)
	}
}

func TestCancelMidWrite(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	r := &cancelingReader{data: make([]byte, 3*bufSize), cancel: cancel}
	err := tg.WriteFile(ctx, "f.bin", r, int64(len(r.data)))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("WriteFile cancelled while copying: error = %v, want one wrapping context.Canceled", err)
	}
}

// cancelingReader cancels its context after the first read.
type cancelingReader struct {
	data   []byte
	cancel func()
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n := copy(p, c.data)
	c.data = c.data[n:]
	c.cancel()
	return n, nil
}

func TestSyncFiles(t *testing.T) {
	ctx := t.Context()
	tg := newTarget(t, t.TempDir())
	for _, n := range []int{0, 1, syncEachMax, syncEachMax + 1, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var paths []string
			for i := range n {
				p := fmt.Sprintf("s%d/d%d/f%d.txt", n, i%7, i)
				if err := tg.MkdirAll(ctx, path.Dir(p)); err != nil {
					t.Fatal(err)
				}
				if err := tg.WriteFileNoSync(ctx, p, strings.NewReader(p), int64(len(p))); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			if err := tg.SyncFiles(ctx, paths); err != nil {
				t.Fatalf("SyncFiles(%d files): %v", n, err)
			}
			for _, p := range paths {
				if got, err := tg.ReadFile(ctx, p); err != nil || string(got) != p {
					t.Errorf("ReadFile(%q) = %q, %v", p, got, err)
				}
			}
		})
	}
	if err := tg.SyncFiles(ctx, []string{"missing.txt"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncFiles of a missing file: error = %v, want one wrapping fs.ErrNotExist", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := tg.SyncFiles(canceled, []string{"s1/d0/f0.txt"}); !errors.Is(err, context.Canceled) {
		t.Errorf("SyncFiles with a cancelled context: error = %v, want one wrapping context.Canceled", err)
	}
	_ = tg.Close()
	if err := tg.SyncFiles(ctx, []string{"s1/d0/f0.txt"}); !errors.Is(err, targets.ErrClosed) {
		t.Errorf("SyncFiles after Close: error = %v, want one wrapping targets.ErrClosed", err)
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL from linux/fs.h.
const fsImmutableFL = 0x10

// makeReadOnly makes dir refuse changes: mode 0555, or for root (who ignores
// modes) the immutable attribute. It skips the test when neither works.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
		return
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsImmutableFL)
	}
	if err != nil {
		t.Skipf("running as root and cannot make %s immutable: %v", dir, err)
	}
	t.Cleanup(func() {
		f, err := os.Open(dir)
		if err == nil {
			err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags)
			_ = f.Close()
		}
		if err != nil {
			t.Errorf("clear the immutable attribute of %s: %v", dir, err)
		}
	})
}

func TestReadOnlyDirectory(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	tg := newTarget(t, dir)
	if err := tg.MkdirAll(ctx, "ro"); err != nil {
		t.Fatal(err)
	}
	if err := tg.WriteFile(ctx, "ro/old.txt", strings.NewReader("old"), 3); err != nil {
		t.Fatal(err)
	}
	makeReadOnly(t, filepath.Join(dir, "ro"))
	for op, err := range map[string]error{
		"WriteFile": tg.WriteFile(ctx, "ro/new.txt", strings.NewReader("x"), 1),
		"MkdirAll":  tg.MkdirAll(ctx, "ro/sub"),
		"Remove":    tg.Remove(ctx, "ro/old.txt"),
		"Rename":    tg.Rename(ctx, "ro/old.txt", "ro/moved.txt"),
	} {
		if !targets.IsPermanent(err) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s in a read-only directory: error = %v, want a permanent error wrapping fs.ErrPermission", op, err)
		}
	}
	if got, err := tg.ReadFile(ctx, "ro/old.txt"); err != nil || string(got) != "old" {
		t.Errorf("ReadFile(ro/old.txt) = %q, %v; want the file untouched", got, err)
	}
}

func TestClassify(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	pe := func(errno syscall.Errno) error { return &fs.PathError{Op: "write", Path: "f", Err: errno} }
	for _, tc := range []struct {
		err       error
		permanent bool
		text      string
	}{
		{pe(unix.ENOSPC), true, "no space left on device under " + tg.dir},
		{pe(unix.EDQUOT), true, "disk quota exceeded under " + tg.dir},
		{pe(unix.EROFS), true, "read-only file system"},
		{pe(unix.EACCES), true, "permission denied"},
		{pe(unix.EPERM), true, "operation not permitted"},
		{pe(unix.ELOOP), true, "too many levels"},
		{pe(unix.EIO), false, "input/output error"},
		{pe(unix.EINTR), false, "interrupted"},
		{pe(unix.ENOENT), false, "no such file"},
		{fmt.Errorf("read source: %w", io.ErrClosedPipe), false, "read source"},
	} {
		err := tg.classify(tc.err)
		if targets.IsPermanent(err) != tc.permanent || !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("classify(%v) = %v (permanent %v); want permanent %v, wrapping it, saying %q",
				tc.err, err, targets.IsPermanent(err), tc.permanent, tc.text)
		}
	}
}

func TestReadFileLimit(t *testing.T) {
	dir := t.TempDir()
	tg := newTarget(t, dir)
	f, err := os.Create(filepath.Join(dir, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxReadSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	_ = f.Close()
	if _, err := tg.ReadFile(t.Context(), "huge"); !targets.IsPermanent(err) || !strings.Contains(err.Error(), "64 MiB") {
		t.Errorf("ReadFile of a %d-byte file: error = %v, want a permanent error naming the 64 MiB limit", MaxReadSize+1, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.ReadFile(t.Context(), "d"); !targets.IsPermanent(err) {
		t.Errorf("ReadFile of a directory: error = %v, want a permanent error", err)
	}
}

func TestFreeSpace(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	free, ok, err := tg.FreeSpace(t.Context())
	if err != nil || !ok || free <= 0 {
		t.Errorf("FreeSpace = %d, %v, %v; want a positive number of bytes", free, ok, err)
	}
	_ = tg.Close()
	if _, _, err := tg.FreeSpace(t.Context()); !errors.Is(err, targets.ErrClosed) {
		t.Errorf("FreeSpace after Close: error = %v, want one wrapping targets.ErrClosed", err)
	}
}
