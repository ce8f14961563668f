package publisher

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
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// execMem is an in-memory difusor whose commands run [Apply] in-process on
// the same files, over pipes, as "prepcast apply" runs over SSH.
type execMem struct {
	*targettest.Mem
	t       *testing.T
	pub     ed25519.PublicKey // --public-key; nil trusts on first use
	corrupt int64             // when > 0, flip the byte at this offset of the package stream
	runs    atomic.Int32
	got     atomic.Int64 // bytes the last apply read from its stdin
}

var _ targets.Commander = (*execMem)(nil)

func newExecMem(t *testing.T, name string) *execMem {
	return &execMem{Mem: targettest.NewMem(name), t: t}
}

// pushPkg pushes the latest cut to the targets in package mode.
func pushPkg(eng *Engine, xs ...*execMem) []Result {
	specs := make([]TargetSpec, len(xs))
	for i, x := range xs {
		specs[i] = TargetSpec{Target: x, Apply: "prepcast apply --root /www"}
	}
	return eng.Push(context.Background(), specs)
}

// pkgTargetAtFirstCut makes a store with one cut, and a package-mode
// target that an engine brought to it.
func pkgTargetAtFirstCut(t *testing.T) (*fixture, *execMem, *Engine, *packager.CutInfo) {
	t.Helper()
	f := newFixture(t)
	x := newExecMem(t, "pkg")
	eng := f.engine()
	first := f.cut()
	if r := pushPkg(eng, x)[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	return f, x, eng, first
}

// flipByte alters the byte at off of a (read-only) file in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (x *execMem) Command(ctx context.Context, cmd string) (targets.Process, error) {
	x.runs.Add(1)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &memProc{in: inW, out: outR, done: make(chan error, 1)}
	var in io.Reader = inR
	if x.corrupt > 0 {
		in = &flipper{r: inR, at: x.corrupt}
	}
	cr := &countReader{r: in}
	go func() {
		err := Apply(ctx, ApplyOptions{Target: x.Mem, PublicKey: x.pub, In: cr, Out: outW, Version: "test", Log: zaptest.NewLogger(x.t)})
		x.got.Store(cr.n)
		_ = inR.Close()
		_ = outW.Close()
		if err != nil {
			err = fmt.Errorf("exit status 1: %w", err)
		}
		p.done <- err
	}()
	return p, nil
}

type memProc struct {
	in   *io.PipeWriter
	out  *io.PipeReader
	done chan error
	once sync.Once
	err  error
}

func (p *memProc) Stdin() io.WriteCloser { return p.in }
func (p *memProc) Stdout() io.Reader     { return p.out }
func (p *memProc) Wait() error {
	p.once.Do(func() { p.err = <-p.done })
	return p.err
}
func (p *memProc) Close() error {
	_ = p.in.Close()
	_ = p.out.Close()
	return nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// flipper flips one byte of the package stream: the offset counts from
// the first byte after the request line.
type flipper struct {
	r       io.Reader
	at      int64
	off     int64
	pastReq bool
}

func (f *flipper) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	for i := 0; i < n; i++ {
		if !f.pastReq {
			if b[i] == '\n' {
				f.pastReq = true
			}
			continue
		}
		if f.off == f.at {
			b[i] ^= 0x55
		}
		f.off++
	}
	return n, err
}

// checkServes fails unless the difusor holds every file of cut seq with
// the cut's bytes.
func checkServes(t *testing.T, f *fixture, m *targettest.Mem, seq int64) {
	t.Helper()
	man, mb, err := f.store.Manifest(seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range man.Entries {
		b, ok := m.File(e.Path)
		if !ok {
			t.Fatalf("cut %d: %s missing on the difusor", seq, e.Path)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Fatalf("cut %d: %s differs from the cut", seq, e.Path)
		}
	}
	a, err := ParseAck(mustFile(t, m, AckPath))
	if err != nil || a.Seq != seq {
		t.Fatalf("ack = %+v, %v; want cut %d", a, err, seq)
	}
	if sig, _ := f.store.Signature(seq); a.Signature != packager.SignatureBase64(sig) || a.Manifest != packager.Hash(mb) {
		t.Fatalf("ack names signature %.16s and manifest %.12s, not the cut's", a.Signature, a.Manifest)
	}
}

func mustFile(t *testing.T, m *targettest.Mem, p string) []byte {
	t.Helper()
	b, ok := m.File(p)
	if !ok {
		t.Fatalf("%s missing", p)
	}
	return b
}

func TestPackageModeBringsEachCut(t *testing.T) {
	f := newFixture(t)
	x := newExecMem(t, "pkg")
	eng := f.engine()
	clock := time.Date(2024, 6, 2, 20, 0, 0, 0, time.UTC)
	eng.Now = func() time.Time { return clock }
	eng.RetentionWindow = time.Minute
	for k := int64(1); k <= 3; k++ {
		clock = clock.Add(time.Minute)
		ci := f.cut()
		r := pushPkg(eng, x)[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		checkServes(t, f, x.Mem, ci.Seq)
		// The package built by the cut went, and nothing else.
		if r.Bytes != ci.PackageSize || x.got.Load() < ci.PackageSize {
			t.Fatalf("cut %d: sent %d bytes, apply read %d; the cut's package has %d", k, r.Bytes, x.got.Load(), ci.PackageSize)
		}
	}
	if got := x.runs.Load(); got != 3 {
		t.Fatalf("apply ran %d times, want 3", got)
	}
	// json/c001 left the manifest at cut 2 and was deleted at cut 3, a
	// window later; json/c002 left at cut 3 and is still retired.
	if _, ok := x.File("json/c001/totales.json"); ok {
		t.Fatal("retired json/c001 was not deleted")
	}
	if _, ok := x.File("json/c002/totales.json"); !ok {
		t.Fatal("json/c002 deleted before its window")
	}
	if _, ok := x.File(TrustedKeyPath); !ok {
		t.Fatal("publisher key not pinned on first use")
	}
	for p := range x.Files() {
		if strings.HasPrefix(p, StagingDir+"/") {
			t.Fatalf("staging leftover %s", p)
		}
	}
}

func TestPackageModeCorruptStreamCommitsNothing(t *testing.T) {
	f, x, eng, _ := pkgTargetAtFirstCut(t)
	before := mustFile(t, x.Mem, "json/main.json")
	ci := f.cut()
	for _, at := range []int64{ci.PackageSize / 2, ci.PackageSize - 20} {
		x.corrupt = at
		r := pushPkg(eng, x)[0]
		if r.Err == nil {
			t.Fatalf("flipped byte %d of %d: push succeeded", at, ci.PackageSize)
		}
		if !strings.Contains(r.Err.Error(), "bad-package") {
			t.Fatalf("flipped byte %d: error %v does not say the package was bad", at, r.Err)
		}
		if got := mustFile(t, x.Mem, "json/main.json"); !bytes.Equal(got, before) {
			t.Fatalf("flipped byte %d: main.json changed to %s", at, got)
		}
		checkServes(t, f, x.Mem, ci.Seq-1)
	}
	x.corrupt = 0
	if r := pushPkg(eng, x)[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServes(t, f, x.Mem, ci.Seq)
}

func TestPackageModeRefusesOtherKey(t *testing.T) {
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name string
		prep func(x *execMem)
		want string
	}{
		{"configured key", func(x *execMem) { x.pub = other }, "key-mismatch"},
		{"pinned key", func(x *execMem) {
			_ = x.SetFile(TrustedKeyPath, packager.EncodePublicKey(other))
		}, "pinned"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			x := newExecMem(t, "pkg")
			tt.prep(x)
			f.cut()
			r := pushPkg(f.engine(), x)[0]
			if r.Err == nil || !strings.Contains(r.Err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", r.Err, tt.want)
			}
			if !targets.IsPermanent(r.Err) || r.Attempts != 1 {
				t.Fatalf("a key mismatch must not be retried: permanent=%v attempts=%d", targets.IsPermanent(r.Err), r.Attempts)
			}
			if _, ok := x.File("json/main.json"); ok {
				t.Fatal("main.json written despite the refusal")
			}
		})
	}
}

func TestPackageModeLaggingTargetGetsOnePackageFromItsCut(t *testing.T) {
	f := newFixture(t)
	a := newExecMem(t, "a")
	b := newExecMem(t, "b")
	eng := f.engine()
	f.cut()
	for _, x := range []*execMem{a, b} {
		if r := pushPkg(eng, x)[0]; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	f.cut()
	f.cut()
	ci := f.cut() // cut 4; both targets hold cut 1
	rs := pushPkg(f.engine(), a, b)
	for _, r := range rs {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	checkServes(t, f, a.Mem, ci.Seq)
	checkServes(t, f, b.Mem, ci.Seq)
	pr, err := f.store.OpenPackage(1, ci.Seq)
	if err != nil {
		t.Fatal(err)
	}
	info := pr.Info()
	pr.Close()
	if _, err := os.Stat(filepath.Join(f.store.CutDir(ci.Seq), packager.PackageName(1))); err != nil || rs[0].Bytes != info.Size || rs[1].Bytes != info.Size {
		t.Fatalf("package from cut 1 (%d bytes, %v); targets were sent %d and %d bytes", info.Size, err, rs[0].Bytes, rs[1].Bytes)
	}
}

func TestPackageModeNeedsCommander(t *testing.T) {
	f := newFixture(t)
	f.cut()
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: targettest.NewMem("plain"), Apply: "apply"}})[0]
	if r.Err == nil || !targets.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), "mode: sftp") {
		t.Fatalf("err = %v", r.Err)
	}
}

func TestApplyRefusesGarbage(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{"no request", "", "read request"},
		{"not json", "hello\n", "not a prepcast-apply/1 message"},
		{"other format", `{"format":"prepcast-apply/9"}` + "\n", "same prepcast version"},
		{"no package", `{"format":"prepcast-apply/1","public_key":"` + strings.Repeat("A", 43) + `=","package_size":0}` + "\n", "no package"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := targettest.NewMem("d")
			var out bytes.Buffer
			err := Apply(context.Background(), ApplyOptions{Target: m, In: strings.NewReader(tt.in), Out: &out})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if !strings.HasPrefix(out.String(), `{"format":"prepcast-apply/1"`) {
				t.Fatalf("no greeting: %q", out.String())
			}
		})
	}
}

func TestPackageModeRebuildsDamagedPackage(t *testing.T) {
	f, x, eng, _ := pkgTargetAtFirstCut(t)
	ci := f.cut()
	// A byte of the stored package rots (in its compressed metadata).
	flipByte(t, f.store.PackagePath(ci), 100)
	r := pushPkg(eng, x)[0]
	if r.Err != nil {
		t.Fatalf("push with a damaged package: %v", r.Err)
	}
	if r.Attempts != 2 {
		t.Fatalf("%d attempts; want the refused package and its rebuild", r.Attempts)
	}
	checkServes(t, f, x.Mem, ci.Seq)
}

// An image rots in the store after its cut: the package carries the
// object's bytes, so the difusor refuses it, the rebuild finds the object
// corrupt, and the push stops for good, naming it; the difusor keeps
// serving its cut whole.
func TestPackageModeNeverCommitsARottenObject(t *testing.T) {
	f, x, eng, first := pkgTargetAtFirstCut(t)
	ci := f.cut()
	m, _, err := f.store.Manifest(ci.Seq)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := m.Lookup(fmt.Sprintf("actas/%03d.jpg", f.n))
	flipByte(t, f.store.ObjectPath(img.SHA256), 10)
	r := pushPkg(eng, x)[0]
	if r.Err == nil || !targets.IsPermanent(r.Err) || !errors.Is(r.Err, packager.ErrCorruptObject) || !strings.Contains(r.Err.Error(), img.Path) {
		t.Fatalf("push of a cut with a rotten image: %v", r.Err)
	}
	checkServes(t, f, x.Mem, first.Seq)
}
