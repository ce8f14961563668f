package targettest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/targets"
)

// Symlinker is implemented by targets, or test wrappers around them, that
// can create symbolic links. [Run] uses it to check that Walk and RemoveAll
// never follow links; without it those checks are skipped.
type Symlinker interface {
	// Symlink creates the link newname pointing at oldname; both are
	// relative to the target's root.
	Symlink(ctx context.Context, oldname, newname string) error
}

// Run checks that the targets made by newTarget keep the [targets.Target]
// contract. Each subtest gets a new, empty target from newTarget, which
// should register its own cleanup; Run closes the target too.
func Run(t *testing.T, newTarget func(t *testing.T) targets.Target) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, tg targets.Target)
	}{
		{"WriteRead", testWriteRead},
		{"Overwrite", testOverwrite},
		{"ReadsExactlySize", testReadsExactlySize},
		{"ShortSource", testShortSource},
		{"SourceError", testSourceError},
		{"NotExist", testNotExist},
		{"RenameReplaces", testRenameReplaces},
		{"Remove", testRemove},
		{"RemoveAll", testRemoveAll},
		{"Walk", testWalk},
		{"WalkSymlinks", testWalkSymlinks},
		{"MkdirAll", testMkdirAll},
		{"RefusesEscapingPaths", testRefusesEscapingPaths},
		{"ConcurrentWrites", testConcurrentWrites},
		{"CanceledContext", testCanceledContext},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t)
			t.Cleanup(func() { _ = tg.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			tc.fn(t, ctx, tg)
		})
	}
}

// put creates p's parent and writes data to p.
func put(t *testing.T, ctx context.Context, tg targets.Target, p string, data []byte) {
	t.Helper()
	if err := tg.MkdirAll(ctx, path.Dir(p)); err != nil {
		t.Fatalf("MkdirAll(%q): %v", path.Dir(p), err)
	}
	if err := tg.WriteFile(ctx, p, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("WriteFile(%q, %d bytes): %v", p, len(data), err)
	}
}

// expect reads p and compares it with want.
func expect(t *testing.T, ctx context.Context, tg targets.Target, p string, want []byte) {
	t.Helper()
	got, err := tg.ReadFile(ctx, p)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", p, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ReadFile(%q) = %d bytes %.40q, want %d bytes %.40q", p, len(got), got, len(want), want)
	}
}

// expectMissing checks that reading p fails with fs.ErrNotExist.
func expectMissing(t *testing.T, ctx context.Context, tg targets.Target, p string) {
	t.Helper()
	if _, err := tg.ReadFile(ctx, p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile(%q) error = %v, want one wrapping fs.ErrNotExist", p, err)
	}
}

// walk lists everything below dir, by path.
func walk(t *testing.T, ctx context.Context, tg targets.Target, dir string) map[string]targets.FileInfo {
	t.Helper()
	out := make(map[string]targets.FileInfo)
	err := tg.Walk(ctx, dir, func(fi targets.FileInfo) error {
		if _, dup := out[fi.Path]; dup {
			return fmt.Errorf("%s reported twice", fi.Path)
		}
		out[fi.Path] = fi
		return nil
	})
	if err != nil {
		t.Fatalf("Walk(%q): %v", dir, err)
	}
	return out
}

func paths(m map[string]targets.FileInfo) []string {
	var ps []string
	for p := range m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides every method but Read, so the target cannot learn the
// size or seek.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func testWriteRead(t *testing.T, ctx context.Context, tg targets.Target) {
	if tg.Name() == "" {
		t.Error("Name() is empty")
	}
	files := []struct {
		path string
		data []byte
	}{
		{"index.html", []byte("<h1>PREP</h1>")},
		{"json/main.json", []byte(`{"corte":"20240602_2100"}`)},
		{"a/b/c/deep.txt", []byte("deep")},
		{".prepcast/ack.json", []byte(`{"seq":1}`)},
		{"empty.txt", nil},
		{"actas/acta 0001 ñ.jpg", randomBytes(1, 100_003)},
		{"big.bin", randomBytes(2, 1<<20+123)},
	}
	for _, f := range files {
		put(t, ctx, tg, f.path, f.data)
	}
	// A reader that exposes nothing but Read.
	plain := randomBytes(3, 70_001)
	if err := tg.WriteFile(ctx, "plain.bin", onlyReader{bytes.NewReader(plain)}, int64(len(plain))); err != nil {
		t.Fatalf("WriteFile(plain.bin) from a plain reader: %v", err)
	}
	for _, f := range files {
		expect(t, ctx, tg, f.path, f.data)
	}
	expect(t, ctx, tg, "plain.bin", plain)
}

func testOverwrite(t *testing.T, ctx context.Context, tg targets.Target) {
	put(t, ctx, tg, "f.txt", randomBytes(4, 100_000))
	put(t, ctx, tg, "f.txt", []byte("short"))
	expect(t, ctx, tg, "f.txt", []byte("short"))
	put(t, ctx, tg, "f.txt", nil)
	expect(t, ctx, tg, "f.txt", nil)
}

func testReadsExactlySize(t *testing.T, ctx context.Context, tg targets.Target) {
	for _, n := range []int{10, 40_000} {
		data := randomBytes(uint64(n), 2*n)
		r := bytes.NewReader(data)
		if err := tg.WriteFile(ctx, "part.bin", r, int64(n)); err != nil {
			t.Fatalf("WriteFile(size %d from a %d-byte reader): %v", n, 2*n, err)
		}
		expect(t, ctx, tg, "part.bin", data[:n])
		if r.Len() != n {
			t.Errorf("WriteFile(size %d) consumed %d bytes of the reader, want exactly %d", n, 2*n-r.Len(), n)
		}
	}
}

func testShortSource(t *testing.T, ctx context.Context, tg targets.Target) {
	for _, tc := range []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"small", strings.NewReader("12345"), 10},
		{"plain reader", onlyReader{bytes.NewReader(randomBytes(5, 50_000))}, 100_000},
		{"empty", strings.NewReader(""), 1},
	} {
		err := tg.WriteFile(ctx, "short.bin", tc.r, tc.size)
		switch {
		case err == nil:
			t.Errorf("%s: WriteFile with a source shorter than size %d succeeded", tc.name, tc.size)
		case !targets.IsPermanent(err) || !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("%s: WriteFile error = %v, want a permanent error wrapping io.ErrUnexpectedEOF", tc.name, err)
		}
	}
}

type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func testSourceError(t *testing.T, ctx context.Context, tg targets.Target) {
	errDisk := errors.New("local disk failed")
	for _, n := range []int{0, 100, 100_000} {
		err := tg.WriteFile(ctx, "src.bin", &failingReader{n: n, err: errDisk}, 1<<20)
		if !errors.Is(err, errDisk) {
			t.Errorf("WriteFile from a reader failing after %d bytes: error = %v, want it to wrap the reader's error", n, err)
		}
	}
	put(t, ctx, tg, "after.txt", []byte("still works"))
	expect(t, ctx, tg, "after.txt", []byte("still works"))
}

func testNotExist(t *testing.T, ctx context.Context, tg targets.Target) {
	expectMissing(t, ctx, tg, "missing.txt")
	expectMissing(t, ctx, tg, "nodir/missing.txt")
	if err := tg.WriteFile(ctx, "nodir/f.txt", strings.NewReader("x"), 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile into a missing directory: error = %v, want one wrapping fs.ErrNotExist", err)
	}
	if err := tg.Rename(ctx, "missing.txt", "other.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Rename of a missing file: error = %v, want one wrapping fs.ErrNotExist", err)
	}
	if err := tg.Walk(ctx, "nodir", func(targets.FileInfo) error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Walk of a missing directory: error = %v, want one wrapping fs.ErrNotExist", err)
	}
}

func testRenameReplaces(t *testing.T, ctx context.Context, tg targets.Target) {
	put(t, ctx, tg, "json/main.json", []byte("old pointer"))
	put(t, ctx, tg, "json/main.json.tmp-1", []byte("new pointer"))
	if err := tg.Rename(ctx, "json/main.json.tmp-1", "json/main.json"); err != nil {
		t.Fatalf("Rename onto an existing file: %v", err)
	}
	expect(t, ctx, tg, "json/main.json", []byte("new pointer"))
	expectMissing(t, ctx, tg, "json/main.json.tmp-1")

	put(t, ctx, tg, "x/f.txt", []byte("moved"))
	if err := tg.MkdirAll(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if err := tg.Rename(ctx, "x/f.txt", "y/f.txt"); err != nil {
		t.Fatalf("Rename across directories: %v", err)
	}
	expect(t, ctx, tg, "y/f.txt", []byte("moved"))
	expectMissing(t, ctx, tg, "x/f.txt")

	put(t, ctx, tg, ".prepcast/ack.json.tmp", []byte(`{"seq":2}`))
	if err := tg.Rename(ctx, ".prepcast/ack.json.tmp", ".prepcast/ack.json"); err != nil {
		t.Fatalf("Rename inside .prepcast: %v", err)
	}
	expect(t, ctx, tg, ".prepcast/ack.json", []byte(`{"seq":2}`))
}

func testRemove(t *testing.T, ctx context.Context, tg targets.Target) {
	put(t, ctx, tg, "d/f.txt", []byte("x"))
	if err := tg.Remove(ctx, "d"); err == nil {
		t.Error("Remove of a non-empty directory succeeded")
	}
	for i := range 2 { // the second time, the file is missing
		if err := tg.Remove(ctx, "d/f.txt"); err != nil {
			t.Fatalf("Remove(d/f.txt) #%d: %v", i+1, err)
		}
	}
	expectMissing(t, ctx, tg, "d/f.txt")
	if err := tg.Remove(ctx, "d"); err != nil {
		t.Fatalf("Remove of an empty directory: %v", err)
	}
	if got := walk(t, ctx, tg, ""); len(got) != 0 {
		t.Errorf("after removing everything, Walk lists %v", paths(got))
	}
	// A directory can be made again where one was removed.
	put(t, ctx, tg, "d/g.txt", []byte("again"))
	expect(t, ctx, tg, "d/g.txt", []byte("again"))
}

func testRemoveAll(t *testing.T, ctx context.Context, tg targets.Target) {
	for _, p := range []string{"t/a.txt", "t/b/c.txt", "t/b/d/e.txt", "t/b/d/f.txt", "t2/keep.txt", "t.txt"} {
		put(t, ctx, tg, p, []byte(p))
	}
	for i := range 2 { // the second time, t is missing
		if err := tg.RemoveAll(ctx, "t"); err != nil {
			t.Fatalf("RemoveAll(t) #%d: %v", i+1, err)
		}
	}
	if got, want := paths(walk(t, ctx, tg, "")), []string{"t.txt", "t2/keep.txt"}; !slices.Equal(got, want) {
		t.Errorf("after RemoveAll(t), Walk lists %v, want %v", got, want)
	}
	if err := tg.RemoveAll(ctx, "t.txt"); err != nil {
		t.Fatalf("RemoveAll of a file: %v", err)
	}
	expectMissing(t, ctx, tg, "t.txt")
	put(t, ctx, tg, "t/b/new.txt", []byte("new"))
	expect(t, ctx, tg, "t/b/new.txt", []byte("new"))
}

func testWalk(t *testing.T, ctx context.Context, tg targets.Target) {
	files := map[string]int{"w/a.txt": 3, "w/sub/b.txt": 5, "w/sub/deeper/c.txt": 0, "other/x": 1, "top": 7}
	for p, n := range files {
		put(t, ctx, tg, p, randomBytes(uint64(n), n))
	}
	if err := tg.MkdirAll(ctx, "w/empty/dir"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"", []string{"other/x", "top", "w/a.txt", "w/sub/b.txt", "w/sub/deeper/c.txt"}},
		{".", []string{"other/x", "top", "w/a.txt", "w/sub/b.txt", "w/sub/deeper/c.txt"}},
		{"w", []string{"w/a.txt", "w/sub/b.txt", "w/sub/deeper/c.txt"}},
		{"w/sub", []string{"w/sub/b.txt", "w/sub/deeper/c.txt"}},
		{"w/empty", nil},
		{"top", []string{"top"}},
	} {
		got := walk(t, ctx, tg, tc.dir)
		if ps := paths(got); !slices.Equal(ps, tc.want) {
			t.Errorf("Walk(%q) lists %v, want %v", tc.dir, ps, tc.want)
		}
		for p, fi := range got {
			if fi.Size != int64(files[p]) || fi.Symlink || fi.ModTime.IsZero() {
				t.Errorf("Walk(%q) reports %+v, want size %d, no symlink, a modification time", tc.dir, fi, files[p])
			}
		}
	}
	stop := errors.New("stop here")
	calls := 0
	err := tg.Walk(ctx, "", func(targets.FileInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with fn failing: %d calls, error %v; want 1 call and fn's error", calls, err)
	}
}

func testWalkSymlinks(t *testing.T, ctx context.Context, tg targets.Target) {
	sl, ok := tg.(Symlinker)
	if !ok {
		t.Skip("target cannot create symbolic links")
	}
	put(t, ctx, tg, "s/real.txt", []byte("real"))
	put(t, ctx, tg, "s/dir/inner.txt", []byte("inner"))
	if err := sl.Symlink(ctx, "s/real.txt", "s/flink"); err != nil {
		t.Fatalf("Symlink: %v", err)
	}
	if err := sl.Symlink(ctx, "s/dir", "s/dlink"); err != nil {
		t.Fatalf("Symlink: %v", err)
	}
	got := walk(t, ctx, tg, "")
	if ps, want := paths(got), []string{"s/dir/inner.txt", "s/dlink", "s/flink", "s/real.txt"}; !slices.Equal(ps, want) {
		t.Fatalf("Walk lists %v, want %v (links reported, never followed)", ps, want)
	}
	for p, fi := range got {
		if want := strings.Contains(p, "link"); fi.Symlink != want {
			t.Errorf("Walk reports %s with Symlink=%v, want %v", p, fi.Symlink, want)
		}
	}
	if ps := paths(walk(t, ctx, tg, "s/dlink")); !slices.Equal(ps, []string{"s/dlink"}) {
		t.Errorf("Walk(s/dlink) lists %v, want only the link itself", ps)
	}
	if err := tg.RemoveAll(ctx, "s/dlink"); err != nil {
		t.Fatalf("RemoveAll of a link to a directory: %v", err)
	}
	if err := tg.Remove(ctx, "s/flink"); err != nil {
		t.Fatalf("Remove of a link to a file: %v", err)
	}
	expect(t, ctx, tg, "s/dir/inner.txt", []byte("inner"))
	expect(t, ctx, tg, "s/real.txt", []byte("real"))
	if ps, want := paths(walk(t, ctx, tg, "")), []string{"s/dir/inner.txt", "s/real.txt"}; !slices.Equal(ps, want) {
		t.Errorf("after removing the links, Walk lists %v, want %v", ps, want)
	}
}

func testMkdirAll(t *testing.T, ctx context.Context, tg targets.Target) {
	for _, dir := range []string{"m/n/o", "m/n/o", "m", "", ".", ".prepcast/staging"} {
		if err := tg.MkdirAll(ctx, dir); err != nil {
			t.Fatalf("MkdirAll(%q): %v", dir, err)
		}
	}
	put(t, ctx, tg, "m/n/o/f.txt", []byte("f"))
	expect(t, ctx, tg, "m/n/o/f.txt", []byte("f"))
	put(t, ctx, tg, ".prepcast/staging/s", []byte("s"))
	put(t, ctx, tg, "m/file", []byte("a file"))
	for _, dir := range []string{"m/file", "m/file/sub"} {
		if err := tg.MkdirAll(ctx, dir); err == nil {
			t.Errorf("MkdirAll(%q) over a file succeeded", dir)
		}
	}
	expect(t, ctx, tg, "m/file", []byte("a file"))
}

func testRefusesEscapingPaths(t *testing.T, ctx context.Context, tg targets.Target) {
	put(t, ctx, tg, "ok", []byte("ok"))
	bad := []string{
		"../outside", "/etc/passwd", "a/../../outside", "..", "./a", "a/./b", "a//b", "a/",
		`a\b`, "a\x00b", "a\nb", ".prepcast/../../x", "\xff", strings.Repeat("a", safepath.MaxLen+1),
	}
	noop := func(targets.FileInfo) error { return nil }
	for _, p := range bad {
		ops := map[string]error{
			"WriteFile":      tg.WriteFile(ctx, p, strings.NewReader("evil"), 4),
			"Rename from":    tg.Rename(ctx, p, "ok"),
			"Rename to":      tg.Rename(ctx, "ok", p),
			"Remove":         tg.Remove(ctx, p),
			"RemoveAll":      tg.RemoveAll(ctx, p),
			"MkdirAll":       tg.MkdirAll(ctx, p),
			"Walk":           tg.Walk(ctx, p, noop),
			"ReadFile":       func() error { _, err := tg.ReadFile(ctx, p); return err }(),
			"MkdirAll child": tg.MkdirAll(ctx, p+"/sub"),
		}
		for op, err := range ops {
			if err == nil || !targets.IsPermanent(err) || !errors.Is(err, safepath.ErrInvalid) {
				t.Errorf("%s(%q): error = %v, want a permanent error wrapping safepath.ErrInvalid", op, p, err)
			}
		}
	}
	for _, p := range []string{""} { // the root is not a file
		if err := tg.WriteFile(ctx, p, strings.NewReader("x"), 1); !errors.Is(err, safepath.ErrInvalid) {
			t.Errorf("WriteFile(%q): error = %v, want one wrapping safepath.ErrInvalid", p, err)
		}
		if err := tg.RemoveAll(ctx, p); !errors.Is(err, safepath.ErrInvalid) {
			t.Errorf("RemoveAll(%q): error = %v, want one wrapping safepath.ErrInvalid", p, err)
		}
	}
	if ps := paths(walk(t, ctx, tg, "")); !slices.Equal(ps, []string{"ok"}) {
		t.Errorf("after refused operations, Walk lists %v, want only ok", ps)
	}
	expect(t, ctx, tg, "ok", []byte("ok"))
}

func testConcurrentWrites(t *testing.T, ctx context.Context, tg targets.Target) {
	const n = 50
	want := make(map[string][]byte)
	for i := range n {
		want[fmt.Sprintf("c/d%d/e%d/f%02d.bin", i%3, i%5, i)] = randomBytes(uint64(i), i*200)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for p, data := range want {
		wg.Go(func() {
			if err := tg.MkdirAll(ctx, path.Dir(p)); err != nil {
				errs <- fmt.Errorf("MkdirAll(%q): %w", path.Dir(p), err)
				return
			}
			if err := tg.WriteFile(ctx, p, bytes.NewReader(data), int64(len(data))); err != nil {
				errs <- fmt.Errorf("WriteFile(%q): %w", p, err)
				return
			}
			got, err := tg.ReadFile(ctx, p)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("ReadFile(%q) = %d bytes, %v; want the %d bytes written", p, len(got), err, len(data))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := walk(t, ctx, tg, "c")
	if len(got) != n {
		t.Errorf("Walk(c) lists %d files, want %d", len(got), n)
	}
	for p, data := range want {
		if got[p].Size != int64(len(data)) {
			t.Errorf("Walk(c) reports %s with size %d, want %d", p, got[p].Size, len(data))
		}
	}
}

func testCanceledContext(t *testing.T, ctx context.Context, tg targets.Target) {
	put(t, ctx, tg, "keep.txt", []byte("keep"))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	noop := func(targets.FileInfo) error { return nil }
	ops := map[string]error{
		"WriteFile": tg.WriteFile(canceled, "new.txt", strings.NewReader("x"), 1),
		"Rename":    tg.Rename(canceled, "keep.txt", "moved.txt"),
		"Remove":    tg.Remove(canceled, "keep.txt"),
		"RemoveAll": tg.RemoveAll(canceled, "keep.txt"),
		"MkdirAll":  tg.MkdirAll(canceled, "newdir"),
		"Walk":      tg.Walk(canceled, "", noop),
		"ReadFile":  func() error { _, err := tg.ReadFile(canceled, "keep.txt"); return err }(),
	}
	for op, err := range ops {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: error = %v, want one wrapping context.Canceled", op, err)
		}
	}
	if ps := paths(walk(t, ctx, tg, "")); !slices.Equal(ps, []string{"keep.txt"}) {
		t.Errorf("after cancelled operations, Walk lists %v, want only keep.txt", ps)
	}
}

func testClose(t *testing.T, ctx context.Context, tg targets.Target) {
	put(t, ctx, tg, "f.txt", []byte("f"))
	if err := tg.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := tg.ReadFile(ctx, "f.txt"); !errors.Is(err, targets.ErrClosed) {
		t.Errorf("ReadFile after Close: error = %v, want one wrapping targets.ErrClosed", err)
	}
	if err := tg.WriteFile(ctx, "g.txt", strings.NewReader("g"), 1); !errors.Is(err, targets.ErrClosed) {
		t.Errorf("WriteFile after Close: error = %v, want one wrapping targets.ErrClosed", err)
	}
	if err := tg.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
