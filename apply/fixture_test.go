package apply_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/apply"
	"github.com/prepcast/prepcast/internal/cuttest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// fixture is an institute: a store of signed cuts of a small results tree.
type fixture struct{ *cuttest.Institute }

func newFixture(t *testing.T) *fixture { return &fixture{cuttest.NewInstitute(t)} }

func (f *fixture) engine() *publisher.Engine {
	return &publisher.Engine{Store: f.Store, PublicKey: f.Pub, Log: zaptest.NewLogger(f.T),
		Retry: publisher.RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: 5 * time.Millisecond}, CycleTimeout: 30 * time.Second}
}

// manifest returns cut seq's manifest, its bytes and signature.
func (f *fixture) manifest(seq int64) (*packager.Manifest, []byte, []byte) {
	f.T.Helper()
	m, mb, err := f.Store.Manifest(seq)
	if err != nil {
		f.T.Fatal(err)
	}
	sig, err := f.Store.Signature(seq)
	if err != nil {
		f.T.Fatal(err)
	}
	return m, mb, sig
}

// execMem is an in-memory difusor whose commands run apply.Apply
// in-process on the same files, over pipes, as "prepcast apply" runs over
// SSH.
type execMem struct {
	*targettest.Mem
	t       *testing.T
	pub     ed25519.PublicKey // --public-key
	tofu    bool              // --trust-on-first-use
	corrupt int64             // when > 0, flip the byte at this offset of the package stream
	now     func() time.Time  // the difusor's clock
	runs    atomic.Int32
	got     atomic.Int64 // bytes the last apply read from its stdin
}

var _ targets.Commander = (*execMem)(nil)

// newExecMem returns a difusor that trusts the fixture's key.
func newExecMem(t *testing.T, name string, pub ed25519.PublicKey) *execMem {
	return &execMem{Mem: targettest.NewMem(name), t: t, pub: pub}
}

// pushPkg pushes the latest cut to the targets in package mode.
func pushPkg(eng *publisher.Engine, xs ...*execMem) []publisher.Result {
	specs := make([]publisher.TargetSpec, len(xs))
	for i, x := range xs {
		specs[i] = publisher.TargetSpec{Target: x, Apply: "prepcast apply --root /www"}
	}
	return eng.Push(context.Background(), specs)
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
		err := apply.Apply(ctx, apply.Options{Target: x.Mem, PublicKey: x.pub, TrustOnFirstUse: x.tofu, In: cr, Out: outW,
			Version: "test", Log: zaptest.NewLogger(x.t), Now: x.now})
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
// the cut's bytes, and acknowledges that cut.
func checkServes(t *testing.T, f *fixture, m *targettest.Mem, seq int64) {
	t.Helper()
	man, mb, sig := f.manifest(seq)
	for _, e := range man.Entries {
		b, ok := m.File(e.Path)
		if !ok {
			t.Fatalf("cut %d: %s missing on the difusor", seq, e.Path)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Fatalf("cut %d: %s differs from the cut", seq, e.Path)
		}
	}
	a, err := publisher.ParseAck(mustFile(t, m, publisher.AckPath))
	if err != nil || a.Seq != seq {
		t.Fatalf("ack = %+v, %v; want cut %d", a, err, seq)
	}
	if a.Signature != packager.SignatureBase64(sig) || a.Manifest != packager.Hash(mb) {
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
