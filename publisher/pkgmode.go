package publisher

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/applyproto"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// greetingTimeout bounds the wait for "prepcast apply" to greet.
const greetingTimeout = 30 * time.Second

// pkgBuild makes sure one package is built once per engine.
type pkgBuild struct {
	mu    sync.Mutex
	built bool
}

// pkgKey names a package: its origin, its cut and its form.
type pkgKey struct {
	from, to int64
	form     packager.PackageForm
}

// openPackage opens the package of form f from cut from to cut to,
// building it on first use; targets that need the same package wait for
// one build.
func (e *Engine) openPackage(from, to int64, f packager.PackageForm) (*packager.PackageReader, error) {
	key := pkgKey{from, to, f}
	e.pkgMu.Lock()
	b := e.pkgs[key]
	if b == nil {
		b = &pkgBuild{}
		e.pkgs[key] = b
	}
	e.pkgMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	t0 := time.Now()
	r, err := e.Store.OpenPackage(from, to, f)
	if err != nil {
		return nil, targets.Permanent(err)
	}
	if !b.built {
		b.built = true
		e.Log.Debug("package ready", zap.Int64("from", from), zap.Int64("to", to), zap.Stringer("form", f),
			zap.Int64("bytes", r.Size()), zap.Duration("took", time.Since(t0)))
	}
	return r, nil
}

// discardPackage drops a package a difusor refused, so that the next
// attempt builds it again from the objects.
func (e *Engine) discardPackage(from, to int64, f packager.PackageForm) {
	e.pkgMu.Lock()
	b := e.pkgs[pkgKey{from, to, f}]
	e.pkgMu.Unlock()
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.built {
		return
	}
	if err := e.Store.DiscardPackage(from, to, f); err != nil {
		e.Log.Warn("discard refused package", zap.Error(err))
		return
	}
	b.built = false
	e.Log.Info("package refused by a difusor; building it again", zap.Int64("from", from), zap.Int64("to", to), zap.Stringer("form", f))
}

// packageForm returns the form of the package for target t, whose apply
// greeted with hello: deltas when it decodes them and its root has not
// failed a delta's base check in this process.
func (e *Engine) packageForm(t string, hello *applyproto.Hello) packager.PackageForm {
	e.pkgMu.Lock()
	whole := e.wholeFiles[t]
	e.pkgMu.Unlock()
	if whole || !slices.Contains(hello.Deltas, packager.DeltaZstd) {
		return packager.WholeFiles
	}
	return packager.FileDeltas
}

// sendWholeFiles makes every later package for target t carry whole files.
func (e *Engine) sendWholeFiles(t string) {
	e.pkgMu.Lock()
	e.wholeFiles[t] = true
	e.pkgMu.Unlock()
}

// pushPackage brings the target to cut c by streaming the package from
// cut fromSeq (0 = nothing) to the apply command on the difusor, which
// checks, stages, commits and acknowledges it (package apply). When the
// difusor greets vouching for no cut (it keeps no signed manifest of the
// cut its ack names, or lacks one of its files), the whole cut goes
// instead: the difusor completes a delta only from a cut it vouches for.
// The cut's public proof is published by apply before its commit when it
// greets saying so (it costs no round trip then), or else by this run
// before the package goes; acked is the cut the target acknowledges.
func (r *targetRun) pushPackage(ctx context.Context, c *cutRef, fromSeq int64, fromManifest string, acked int64, files int, st *attemptStats) (*Ack, error) {
	cmdr, ok := r.t.(targets.Commander)
	if !ok {
		return nil, targets.Permanent(fmt.Errorf("target cannot run commands, so package mode is not available: use mode: sftp"))
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The difusor's apply makes and removes directories (staging, retired
	// files' directories) behind this run's back.
	defer func() {
		r.dirsMu.Lock()
		clear(r.dirs)
		r.dirsMu.Unlock()
	}()
	start := time.Now()
	proc, err := cmdr.Command(ctx, r.apply)
	if err != nil {
		return nil, err
	}
	defer proc.Close()
	// failed explains a broken exchange by how the command ended.
	failed := func(what string, err error) error {
		_ = proc.Stdin().Close()
		done := make(chan error, 1)
		go func() { done <- proc.Wait() }()
		select {
		case werr := <-done:
			if werr != nil {
				return fmt.Errorf("%s: %w", what, escaped{werr})
			}
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("%s: %w", what, err)
	}

	lines := make(chan lineOrErr, 2)
	go func() {
		out := bufio.NewReaderSize(proc.Stdout(), 64<<10)
		for range 2 {
			b, err := applyproto.ReadLine(out, applyproto.MaxLine)
			lines <- lineOrErr{b, err}
			if err != nil {
				return
			}
		}
	}()
	var hello applyproto.Hello
	select {
	case l := <-lines:
		if l.err != nil {
			return nil, failed("apply command ended before greeting", l.err)
		}
		if err := applyproto.DecodeLine(l.b, &hello); err != nil || hello.Format != applyproto.Format {
			if err == nil {
				err = fmt.Errorf("greeting format %s", applyproto.Clip([]byte(hello.Format)))
			}
			return nil, targets.Permanent(fmt.Errorf("the difusor's apply command (%q) does not speak %s: %w; install the same prepcast version on the difusor", r.apply, applyproto.Format, err))
		}
	case <-time.After(greetingTimeout):
		return nil, failed("apply command did not greet", fmt.Errorf("no answer within %v", greetingTimeout))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.e.DB != nil && hello.Trust != "" {
		if err := r.e.DB.SetKeyTrust(ctx, r.t.Name(), hello.Trust); err != nil {
			r.log.Warn("record how the difusor trusts the key", zap.Error(err))
		}
	}
	if hello.Trust == applyproto.TrustOnFirstUse {
		r.log.Warn("difusor trusts the institute key on first use (apply --trust-on-first-use); give it the key with --public-key",
			zap.String("trust", hello.Trust))
	}
	switch {
	case fromSeq != 0 && hello.AckSeq == 0:
		r.log.Info("difusor vouches for no cut (no signed manifest kept, or a file missing); sending the whole cut",
			zap.Int64("acked_seq", fromSeq))
		fromSeq, files = 0, len(c.m.Entries)
	case fromSeq != 0 && (hello.AckSeq != fromSeq || hello.AckManifest != fromManifest):
		return nil, fmt.Errorf("%w: the difusor now holds cut %d, not cut %d; trying again", errBaseChanged, hello.AckSeq, fromSeq)
	}
	if !hello.Proof {
		// An apply that does not publish the cut's proof itself: it goes
		// up now, before the package can be committed.
		if err := r.publishProof(ctx, c, acked, nil); err != nil {
			return nil, err
		}
	}
	form := r.e.packageForm(r.t.Name(), &hello)
	f, err := r.e.openPackage(fromSeq, c.m.Seq, form)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := f.Size()
	r.log.Debug("streaming package", zap.Int64("from", fromSeq), zap.Int64("to", c.m.Seq), zap.Stringer("form", form), zap.Int64("bytes", size),
		zap.String("difusor_version", termsafe.String(hello.Version)))

	req := applyproto.Request{Format: applyproto.Format, Publisher: r.e.Publisher,
		PublicKey: base64.StdEncoding.EncodeToString(r.e.PublicKey), PackageSize: size, FromSeq: fromSeq, ToSeq: c.m.Seq,
		ToManifest: c.manifest, FilesInFlight: r.e.filesInFlight()}
	if err := applyproto.WriteLine(proc.Stdin(), req); err != nil {
		return nil, failed("send request", err)
	}
	sentBefore := r.sent.Load()
	mf := &meteredFile{ctx: ctx, f: f, size: size, limiters: []*rate.Limiter{r.limiter, r.e.uplink}, sent: &r.sent}
	r.prog("staging", 0, size, 0, files)
	// The copy below may outlive this call (a refusal or a broken link
	// returns at once); from then on it reports no progress, so it never
	// touches the run's state after the run moved on.
	var progMu sync.Mutex
	progOpen := true
	defer func() {
		progMu.Lock()
		progOpen = false
		progMu.Unlock()
	}()
	pw := &progressWriter{w: proc.Stdin(), total: size, report: func(done int64) {
		progMu.Lock()
		defer progMu.Unlock()
		if progOpen {
			r.prog("staging", done, size, 0, files)
		}
	}}
	copied := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(pw, mf, make([]byte, 1<<20))
		if err == nil {
			err = proc.Stdin().Close()
		}
		copied <- err
	}()
	var res applyproto.Result
	var resLine lineOrErr
	select {
	case err := <-copied:
		if err != nil {
			// The command may have failed first and said why.
			select {
			case resLine = <-lines:
			case <-time.After(2 * time.Second):
				return nil, failed("stream package", err)
			}
		} else {
			resLine = <-lines
		}
	case resLine = <-lines:
		// An outcome before the whole package went: a refusal.
		cancel()
	}
	st.Bytes, st.Wire = r.sent.Load()-sentBefore, time.Since(start)
	if resLine.err != nil {
		return nil, failed("apply command ended without an outcome", resLine.err)
	}
	if err := applyproto.DecodeLine(resLine.b, &res); err != nil {
		return nil, failed("read outcome", err)
	}
	_ = proc.Wait()
	if res.Code == applyproto.BadPackage {
		// Damaged on the way or on the local disk: the next attempt sends
		// a package built again from the objects.
		r.e.discardPackage(fromSeq, c.m.Seq, form)
	}
	if res.Code == applyproto.BaseDamaged {
		// A file of the difusor's root is not what the signed cut it
		// holds says: changed outside prepcast. Whole files replace what
		// the cut rewrites; the next attempt sends them.
		r.e.sendWholeFiles(r.t.Name())
		r.log.Error("a file in the difusor's root does not match the signed cut it holds (changed outside prepcast); sending whole files from now on",
			zap.String("error", termsafe.String(res.Error)))
	}
	if res.Code != applyproto.OK {
		why := termsafe.String(res.Error)
		err := fmt.Errorf("the difusor did not apply the package (%s): %s", termsafe.Clip(res.Code, 40), why)
		switch res.Code {
		case applyproto.Rollback:
			err = fmt.Errorf("%w (%s)", ErrRollback, why)
		case applyproto.BaseChanged:
			err = fmt.Errorf("%w: %s", errBaseChanged, why)
		}
		if res.Permanent || res.Code == applyproto.Rollback || res.Code == applyproto.KeyMismatch || res.Code == applyproto.Untrusted {
			err = targets.Permanent(err)
		}
		return nil, err
	}
	ack, err := ParseAck(res.Ack)
	if err != nil {
		return nil, fmt.Errorf("the difusor reported an unreadable ack: %w", err)
	}
	if ack.Seq != c.m.Seq || ack.Manifest != c.manifest {
		return nil, fmt.Errorf("the difusor acknowledged cut %d (manifest %.12s) instead of cut %d", ack.Seq, ack.Manifest, c.m.Seq)
	}
	st.Files, st.Deleted = res.Files, res.Deleted
	return ack, nil
}

type lineOrErr struct {
	b   []byte
	err error
}

// progressWriter reports how much was written, at most every 4 MiB.
type progressWriter struct {
	w      io.Writer
	total  int64
	done   int64
	last   int64
	report func(done int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.done-p.last >= 4<<20 || p.done == p.total {
		p.last = p.done
		p.report(p.done)
	}
	return n, err
}

// errBaseChanged: the difusor does not hold the cut a package starts from.
var errBaseChanged = errors.New("the difusor's cut changed")

// escaped is an error whose text came from the difusor (a command's
// standard error): shown escaped, still matched by errors.Is and As.
type escaped struct{ err error }

func (e escaped) Error() string { return termsafe.String(e.err.Error()) }
func (e escaped) Unwrap() error { return e.err }
