package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/targets"
)

// guard bounds one attempt of an operation: it closes the connection when
// the attempt goes OpTimeout without progress, and tells WriteFile's source
// to stop when the caller gives up.
type guard struct {
	c       *conn
	timeout time.Duration
	start   time.Time
	last    atomic.Int64 // time.Since(start) at the last progress
	quit    atomic.Bool  // the caller's ctx ended

	mu    sync.Mutex
	timer *time.Timer
	done  bool
	fired bool
}

func newGuard(c *conn, timeout time.Duration) *guard {
	g := &guard{c: c, timeout: timeout, start: time.Now()}
	g.mu.Lock()
	g.timer = time.AfterFunc(timeout, g.check)
	g.mu.Unlock()
	return g
}

// alive records progress: the attempt gets OpTimeout more.
func (g *guard) alive() { g.last.Store(int64(time.Since(g.start))) }

func (g *guard) check() {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return
	}
	idle := time.Since(g.start) - time.Duration(g.last.Load())
	if idle < g.timeout {
		g.timer.Reset(g.timeout - idle)
		g.mu.Unlock()
		return
	}
	g.fired = true
	g.mu.Unlock()
	g.c.kill(&timeoutError{g.timeout})
}

// stop disarms the guard once the attempt has returned.
func (g *guard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = true
	g.timer.Stop()
}

func (g *guard) timedOut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fired
}

// opSpec says how to run one operation.
type opSpec struct {
	name, path string
	// wait is set when an attempt uses memory the caller owns (WriteFile's
	// reader): a cancelled caller then waits for the attempt to stop,
	// instead of leaving it to finish alone.
	wait bool
	// retry reports whether an attempt that failed because the server or
	// the network had closed the connection may be repeated once on a new
	// connection; nil means never (the operation may have taken effect).
	retry func() bool
}

func always() bool { return true }

// do runs fn on a live connection. pkg/sftp requests do not take a ctx, so
// fn runs in its own goroutine: its guard closes the connection (which
// fails fn promptly) after OpTimeout without progress, and a cancelled ctx
// returns at once, leaving fn to finish under its guard, unless spec.wait.
func (t *Target) do(ctx context.Context, spec opSpec, fn func(c *conn, g *guard) error) error {
	for attempt := 0; ; attempt++ {
		err := t.attempt(ctx, spec.wait, fn)
		if err == nil {
			return nil
		}
		if attempt == 0 && spec.retry != nil && errors.Is(err, errPeerClosed) && ctx.Err() == nil && spec.retry() {
			t.log.Debug("sftp connection was closed; retrying once on a new one",
				zap.String("op", spec.name), zap.String("path", spec.path), zap.Error(err))
			continue
		}
		return t.opErr(spec.name, spec.path, err)
	}
}

func (t *Target) attempt(ctx context.Context, wait bool, fn func(c *conn, g *guard) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := t.getConn(ctx)
	if err != nil {
		return err
	}
	g := newGuard(c, t.cfg.OpTimeout)
	done := make(chan error, 1)
	go func() {
		err := fn(c, g)
		g.stop()
		done <- err
	}()
	select {
	case err := <-done:
		return t.classify(c, g, err)
	case <-ctx.Done():
	}
	select {
	case err := <-done: // finished as ctx ended
		return t.classify(c, g, err)
	default:
	}
	if !wait {
		return ctx.Err()
	}
	g.quit.Store(true)
	grace := time.NewTimer(min(cancelGrace, t.cfg.OpTimeout))
	defer grace.Stop()
	select {
	case err = <-done:
	case <-grace.C:
		c.kill(fmt.Errorf("a cancelled operation did not stop within %v", min(cancelGrace, t.cfg.OpTimeout)))
		err = <-done
	}
	if err == nil {
		return nil
	}
	return ctx.Err()
}

// classify turns what an attempt returned into the error for the caller:
// source errors as they are, timeouts and connection loss retryable (and
// the connection closed), permission denied permanent, missing files
// wrapping fs.ErrNotExist.
func (t *Target) classify(c *conn, g *guard, err error) error {
	if err == nil {
		return nil
	}
	var se *sourceError
	if errors.As(err, &se) {
		return err
	}
	if g.timedOut() {
		return &timeoutError{t.cfg.OpTimeout}
	}
	if isConnLoss(err) || (c.cause() != nil && !isStatus(err)) {
		c.kill(fmt.Errorf("%w: %v", errPeerClosed, err))
		if t.isClosed() {
			return targets.Permanent(targets.ErrClosed)
		}
		return fmt.Errorf("connection lost: %w", c.cause())
	}
	err = mapStatus(err)
	if errors.Is(err, fs.ErrNotExist) {
		// A directory may have been removed behind our back.
		c.forgetAllDirs()
	}
	return err
}

func (t *Target) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// isStatus reports whether err is an answer of the server.
func isStatus(err error) bool {
	var se *pkgsftp.StatusError
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.As(err, &se)
}

// mapStatus marks SFTP status errors: permission denied is permanent and
// wraps fs.ErrPermission, no such file wraps fs.ErrNotExist, an operation
// the server does not support is permanent. The rest (SSH_FX_FAILURE,
// which a full disk also gives) stays retryable.
func mapStatus(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return targets.Permanent(err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var se *pkgsftp.StatusError
	if errors.As(err, &se) {
		switch se.FxCode() {
		case pkgsftp.ErrSSHFxNoSuchFile:
			return &kindError{err, fs.ErrNotExist}
		case pkgsftp.ErrSSHFxPermissionDenied:
			return targets.Permanent(&kindError{err, fs.ErrPermission})
		case pkgsftp.ErrSSHFxOpUnsupported:
			return targets.Permanent(err)
		}
	}
	return err
}

// kindError adds a standard sentinel to an error without changing its text.
type kindError struct{ err, kind error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// sourceError is an error of WriteFile's reader, not of the connection.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "read source: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// source feeds WriteFile's reader to pkg/sftp. It stops after size bytes,
// has a Size method so that pkg/sftp sends many writes concurrently,
// records progress for the guard and the reader's own errors, and stops
// when the caller gives up.
type source struct {
	r      io.Reader
	remain int64
	n      int64
	short  bool  // r ended before size bytes
	err    error // r failed
	g      *guard
}

// Size is what pkg/sftp's File.ReadFrom asks to decide on concurrency.
func (s *source) Size() int64 { return s.remain }

func (s *source) Read(p []byte) (int, error) {
	if s.remain <= 0 {
		return 0, io.EOF
	}
	if s.g.quit.Load() {
		s.err = errors.New("write cancelled")
		return 0, s.err
	}
	if int64(len(p)) > s.remain {
		p = p[:s.remain]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	s.remain -= int64(n)
	s.g.alive()
	switch {
	case err == io.EOF:
		s.short = s.remain > 0
		return n, io.EOF
	case err != nil:
		s.err = err
		return n, err
	}
	return n, nil
}

// progressReader records progress for the guard as it reads.
type progressReader struct {
	r io.Reader
	g *guard
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.g.alive()
	return n, err
}

// MaxReadSize is the most ReadFile returns: targets are read only for
// prepcast's own small files (acks, keys); a larger file is refused after
// MaxReadSize+1 bytes, so a link to /dev/zero costs no more than that.
const MaxReadSize = 64 << 20

// ReadFile returns the content of path, checked against the size the server
// reports for it, if it holds at most [MaxReadSize] bytes.
func (t *Target) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return t.ReadFileMax(ctx, p, MaxReadSize)
}

// ReadFileMax returns the content of path if it holds at most max bytes,
// never reading more than max+1 bytes (a file that is larger, or keeps
// growing, is a permanent error wrapping targets.ErrTooLarge). A regular
// file must hold the size the server reports for it.
func (t *Target) ReadFileMax(ctx context.Context, p string, max int64) ([]byte, error) {
	abs, err := t.abs(p)
	if err != nil {
		return nil, t.opErr("read", p, err)
	}
	var data []byte
	err = t.do(ctx, opSpec{name: "read", path: p, retry: always}, func(c *conn, g *guard) error {
		if s := c.rawReady(); s != nil {
			var err error
			data, err = s.readSmall(g, abs, max)
			return err
		}
		f, err := c.sftp.Open(abs)
		if err != nil {
			return err
		}
		// Nothing waits for the handle to close: the content is read.
		defer func() { go f.Close() }()
		// The first 32 KiB are asked for with the size: a small file costs
		// one round trip after the open.
		first := make([]byte, min(max+1, 32<<10))
		firstRead := background.GoErr(func() (int, error) { return f.ReadAt(first, 0) })
		fi, err := f.Stat()
		n, ferr := firstRead()
		if err != nil {
			return err
		}
		if fi.Size() > max {
			return targets.TooLarge(max)
		}
		if fi.Mode().IsRegular() {
			// Exactly the size the server reports, 32 KiB per request, one
			// at a time, and no request past the end (see HashFile).
			b := make([]byte, fi.Size())
			off := copy(b, first[:n])
			if ferr != nil && ferr != io.EOF {
				return ferr
			}
			for off < len(b) {
				n, err := f.ReadAt(b[off:min(off+32<<10, len(b))], int64(off))
				off += n
				g.alive()
				if n == 0 && err == nil {
					err = io.EOF // a server that answers nothing, and no error
				}
				if err != nil && !(err == io.EOF && off == len(b)) {
					if err == io.EOF {
						return fmt.Errorf("read %d bytes but the server reports %d", off, fi.Size())
					}
					return err
				}
			}
			data = b
			return nil
		}
		b, err := io.ReadAll(io.LimitReader(&progressReader{r: f, g: g}, max+1))
		if err != nil {
			return err
		}
		if int64(len(b)) > max {
			return targets.TooLarge(max)
		}
		if fi.Mode().IsRegular() && int64(len(b)) != fi.Size() {
			return fmt.Errorf("read %d bytes but the server reports %d", len(b), fi.Size())
		}
		data = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// HashFile reads path to its end and returns its SHA-256 and length, one
// buffer at a time, never reading more than max+1 bytes.
func (t *Target) HashFile(ctx context.Context, p string, max int64) ([32]byte, int64, error) {
	abs, err := t.abs(p)
	if err != nil {
		return [32]byte{}, 0, t.opErr("hash", p, err)
	}
	var sum [32]byte
	var n int64
	err = t.do(ctx, opSpec{name: "hash", path: p, retry: always}, func(c *conn, g *guard) error {
		f, err := c.sftp.Open(abs)
		if err != nil {
			return err
		}
		defer f.Close()
		// Read to the size the server reports, never past it: a request
		// past the end costs a round trip and answers nothing.
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return targets.Permanent(fmt.Errorf("not a regular file on the server (%v): a difusor's file must be one", fi.Mode().Type()))
		}
		if fi.Size() > max {
			return targets.TooLarge(max)
		}
		hr := &targets.HashingReader{R: &progressReader{r: io.LimitReader(f, fi.Size()), g: g}, Max: max}
		// One request at a time: a server that throttles downloads
		// (MySecureShell as Debian ships it sends 5 KB/s) is left with one
		// small request to answer when the rotation's time budget ends,
		// not with many that would hold up the push's next requests. A
		// rotation reads a small slice per push, so its speed matters
		// little.
		buf := make([]byte, 32<<10)
		for {
			_, err := hr.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		sum, n = hr.Sum()
		return nil
	})
	if err != nil {
		return [32]byte{}, 0, err
	}
	return sum, n, nil
}

// WriteFile creates or truncates path and writes exactly size bytes of r to
// it, many 32 KiB requests in flight at once. It then checks that the server
// holds size bytes (pkg/sftp can report success on a short write), gives the
// file Config.FileMode unless the server already reports it (a umask such
// as internal-sftp -u 0077 must not hide the site), flushes
// the file with fsync@openssh.com when offered, and closes it. A source
// shorter than size is a permanent error wrapping io.ErrUnexpectedEOF; r is
// never read past size bytes, nor after WriteFile returns.
func (t *Target) WriteFile(ctx context.Context, p string, r io.Reader, size int64) error {
	return t.writeFile(ctx, p, r, size, true)
}

// WriteFileNoSync is WriteFile without the flush to disk; see SyncFiles.
func (t *Target) WriteFileNoSync(ctx context.Context, p string, r io.Reader, size int64) error {
	return t.writeFile(ctx, p, r, size, false)
}

// syncPerSession is how many flushes each session that flushes has in
// flight (see Target.syncClients for which sessions those are).
const syncPerSession = 16

// SyncFiles flushes the given files to the server's disk with
// fsync@openssh.com, several at once: on sessions of their own (OpenSSH's
// sftp-server answers one request at a time, so a flush on the session
// that carries the uploads would stall them), or pipelined on the main
// session when the server refuses extra sessions or Config.FsyncSessions
// is negative. A server without that extension makes it a no-op.
func (t *Target) SyncFiles(ctx context.Context, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		a, err := t.abs(p)
		if err != nil {
			return t.opErr("sync", p, err)
		}
		abs[i] = a
	}
	var extra atomic.Bool // the last attempt flushed on extra sessions
	err := t.do(ctx, opSpec{name: "sync", path: fmt.Sprintf("%d files", len(paths)), wait: true, retry: always}, func(c *conn, g *guard) error {
		if !c.feats.Fsync {
			return nil
		}
		clients, err := t.syncClients(c)
		if err != nil {
			return err
		}
		extra.Store(clients[0] != c.sftp)
		err = flushOn(clients, abs, paths, g)
		if err != nil && clients[0] != c.sftp && c.cause() == nil && isConnLoss(err) {
			// An extra session died while the connection lives (a server
			// process that crashed under load): flush on the main session
			// from now on, and this time.
			t.noteSessionsFailed(err)
			c.dropSyncers()
			err = flushOn([]*pkgsftp.Client{c.sftp}, abs, paths, g)
		}
		return err
	})
	if err != nil && extra.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		// The flush stalled on extra sessions (a server process stuck
		// under a rate limit): the next attempt flushes on the main
		// session.
		t.noteSessionsFailed(err)
	}
	return err
}

// flushOn flushes the files abs (named paths in errors) with
// fsync@openssh.com on the given sessions, several requests in flight per
// session: they hide the round trips (open, fsync, close) on a distant
// difusor, and separate sessions flush in parallel on the server.
func flushOn(clients []*pkgsftp.Client, abs, paths []string, g *guard) error {
	workers := len(clients) * syncPerSession
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		cl := clients[w%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; j < len(abs); j += workers {
				f, err := cl.OpenFile(abs[j], os.O_RDONLY)
				if err == nil {
					err = f.Sync()
					// The file is durable once fsync answers: nothing waits
					// for its read-only handle to close.
					go f.Close()
				}
				if err != nil {
					errs[w] = fmt.Errorf("fsync %s: %w", paths[j], err)
					return
				}
				g.alive()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *Target) writeFile(ctx context.Context, p string, r io.Reader, size int64, flush bool) error {
	abs, err := t.abs(p)
	if err != nil {
		return t.opErr("write", p, err)
	}
	if size < 0 {
		return t.opErr("write", p, targets.Permanent(fmt.Errorf("negative size %d", size)))
	}
	if size <= smallWriteMax && t.pipelines(ctx) {
		// A small file is read whole first, then written in two round
		// trips; from memory, any attempt can be retried.
		buf, err := readSource(r, size)
		if err != nil {
			return t.opErr("write", p, err)
		}
		return t.do(ctx, opSpec{name: "write", path: p, wait: true, retry: always}, func(c *conn, g *guard) error {
			if !flush {
				t.warmSyncers(c)
			}
			if !c.pipelines() { // a new connection to a server that changed
				return t.writeOpen(c, g, abs, &source{r: bytes.NewReader(buf), remain: size, g: g}, size, flush)
			}
			first, err := c.rawSession()
			if err != nil {
				return err
			}
			c.warmWriters()
			s, release, err := c.reserveWrite(ctx, first, len(buf), g.alive)
			if err != nil {
				return err
			}
			a, err := s.writeSmall(c, g, abs, buf, flush && c.feats.Fsync)
			release()
			if err != nil && s != first && s.failed() != nil && c.cause() == nil {
				// An extra session ended while the connection lives (its
				// server process died): once more on the first one.
				t.log.Debug("write session failed; writing on the first one", zap.String("path", p), zap.Error(err))
				a, err = first.writeSmall(c, g, abs, buf, flush && c.feats.Fsync)
			}
			if err != nil {
				return err
			}
			return t.fixModeByPath(c, abs, a)
		})
	}
	src := &source{r: r, remain: size}
	spec := opSpec{name: "write", path: p, wait: true, retry: func() bool { return src.n == 0 }}
	return t.do(ctx, spec, func(c *conn, g *guard) error {
		if !flush {
			t.warmSyncers(c)
		}
		src.g = g
		return t.writeOpen(c, g, abs, src, size, flush)
	})
}

// replaceOpen opens abs for writing with open, which creates or truncates
// it. A server that refuses to overwrite (ProFTPD's default, AllowOverwrite
// off, answers "permission denied" when the name exists; others answer a
// plain failure) gets the existing file removed and the open tried once
// more: WriteFile promises to replace what is there, and prepcast writes
// only names nothing serves (staging names, left behind by a push that
// failed). When the file is not there, or cannot be removed, the first
// answer is returned.
func replaceOpen[H any](c *conn, abs string, open func() (H, error)) (H, error) {
	h, err := open()
	if err == nil || !overwriteRefusal(err) {
		return h, err
	}
	// (REMOVE fails on a missing name and on a directory.)
	if rerr := c.sftp.Remove(abs); rerr != nil {
		return h, err
	}
	return open()
}

// overwriteRefusal reports whether err is an answer by which servers refuse
// to open an existing file for writing: permission denied, or
// SSH_FX_FAILURE.
func overwriteRefusal(err error) bool {
	if errors.Is(err, fs.ErrPermission) {
		return true
	}
	var se *pkgsftp.StatusError
	if errors.As(err, &se) {
		return se.FxCode() == pkgsftp.ErrSSHFxFailure
	}
	var re *statusError
	return errors.As(err, &re) && re.code == fxFailure
}

// readSource reads exactly size bytes of r: a shorter source is a
// permanent error wrapping io.ErrUnexpectedEOF, a failing one a
// sourceError, as for a streamed write.
func readSource(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || (err == io.EOF && size > 0):
		return nil, targets.Permanent(&sourceError{fmt.Errorf("source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)})
	case err != nil:
		return nil, &sourceError{err}
	}
	return buf, nil
}

// writeOpen writes src to abs with the SFTP client, many requests in
// flight, then checks the size, fixes the mode, flushes when asked and
// closes: WriteFile's steps one round trip after the other.
func (t *Target) writeOpen(c *conn, g *guard, abs string, src *source, size int64, flush bool) error {
	f, err := replaceOpen(c, abs, func() (*pkgsftp.File, error) {
		return c.sftp.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	})
	if err != nil {
		return err
	}
	n, err := f.ReadFrom(src)
	switch {
	case src.err != nil:
		err = &sourceError{src.err}
	case err == nil && src.short:
		err = targets.Permanent(&sourceError{fmt.Errorf("source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)})
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	g.alive()
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat after writing: %w", err)
	}
	if fi.Size() != size {
		_ = f.Close()
		return fmt.Errorf("server holds %d bytes after %d were written", fi.Size(), size)
	}
	g.alive()
	if err := t.fixMode(f, fi); err != nil {
		_ = f.Close()
		return err
	}
	if c.feats.Fsync && flush {
		g.alive()
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("fsync: %w", err)
		}
	}
	g.alive()
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Rename replaces newpath with oldpath atomically (posix-rename@openssh.com).
// On a server without it (allowed by Config.AllowNonAtomicReplace) a new
// newpath is still renamed atomically, but an existing one is removed first
// and may be missing for about one round trip. It is not retried on a new
// connection: the first attempt may have taken effect.
func (t *Target) Rename(ctx context.Context, oldpath, newpath string) error {
	desc := oldpath + " to " + newpath
	absOld, err := t.abs(oldpath)
	if err != nil {
		return t.opErr("rename", desc, err)
	}
	absNew, err := t.abs(newpath)
	if err != nil {
		return t.opErr("rename", desc, err)
	}
	return t.do(ctx, opSpec{name: "rename", path: desc}, func(c *conn, g *guard) error {
		c.forgetDirs(oldpath, false)
		c.forgetDirs(newpath, false)
		if !c.feats.PosixRename {
			return renameFallback(c, absOld, absNew)
		}
		return c.sftp.PosixRename(absOld, absNew)
	})
}

// MkdirAll creates dir and its missing parents, each with Config.DirMode
// whatever the server's umask. "" and "." name the root,
// which exists; an existing link to a directory counts as a directory.
// Directories found or made are remembered for the life of the connection,
// so that repeated calls cost no round trip. If a directory is removed by
// someone else, the next operation inside it fails with fs.ErrNotExist and
// the memory is dropped, so that calling MkdirAll again recreates it.
func (t *Target) MkdirAll(ctx context.Context, dir string) error {
	if dir == "" || dir == "." {
		if err := ctx.Err(); err != nil {
			return t.opErr("mkdir", ".", err)
		}
		if t.isClosed() {
			return t.opErr("mkdir", ".", targets.Permanent(targets.ErrClosed))
		}
		return nil
	}
	if _, err := t.abs(dir); err != nil {
		return t.opErr("mkdir", dir, err)
	}
	return t.mkdirAll(ctx, dir)
}

func (t *Target) mkdirAll(ctx context.Context, dir string) error {
	abs := path.Join(t.root, dir)
	spec := opSpec{name: "mkdir", path: dir, retry: always}
	var exists bool
	err := t.do(ctx, spec, func(c *conn, g *guard) error {
		if c.hasDir(dir) {
			exists = true
			return nil
		}
		fi, err := c.sftp.Stat(abs)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case !fi.IsDir():
			return targets.Permanent(fmt.Errorf("%s exists and is not a directory", dir))
		}
		c.addDir(dir)
		exists = true
		return nil
	})
	if err != nil || exists {
		return err
	}
	if parent := path.Dir(dir); parent != "." {
		if err := t.mkdirAll(ctx, parent); err != nil {
			return err
		}
	}
	return t.do(ctx, spec, func(c *conn, g *guard) error {
		if err := c.sftp.Mkdir(abs); err != nil {
			// Someone else (a concurrent MkdirAll) may have made it.
			if fi, serr := c.sftp.Stat(abs); serr != nil || !fi.IsDir() {
				return err
			}
			c.addDir(dir)
			return nil
		}
		// The server's umask chose the mode: set the configured one.
		err := t.setMode(func() error { return c.sftp.Chmod(abs, t.cfg.DirMode) },
			func() (fs.FileInfo, error) { return c.sftp.Stat(abs) }, t.cfg.DirMode, "directory")
		if err != nil {
			return err
		}
		c.addDir(dir)
		return nil
	})
}

// Remove deletes one file, symbolic link or empty directory; a missing path
// is not an error.
func (t *Target) Remove(ctx context.Context, p string) error {
	abs, err := t.abs(p)
	if err != nil {
		return t.opErr("remove", p, err)
	}
	return t.do(ctx, opSpec{name: "remove", path: p, retry: always}, func(c *conn, g *guard) error {
		c.forgetDirs(p, false)
		if err := c.sftp.Remove(abs); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// RemoveAll deletes path and everything below it, never following symbolic
// links: a link is removed, not what it points to. A missing path is not an
// error. Files in one directory are removed several at a time.
func (t *Target) RemoveAll(ctx context.Context, p string) error {
	abs, err := t.abs(p)
	if err != nil {
		return t.opErr("remove", p, err)
	}
	var fi fs.FileInfo
	err = t.do(ctx, opSpec{name: "remove", path: p, retry: always}, func(c *conn, g *guard) error {
		c.forgetDirs(p, true)
		var err error
		fi, err = c.sftp.Lstat(abs)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return t.removeAll(ctx, p, fi)
}

// removeAll removes rel, which Lstat or ReadDir described as fi.
func (t *Target) removeAll(ctx context.Context, rel string, fi fs.FileInfo) error {
	abs := path.Join(t.root, rel)
	spec := opSpec{name: "remove", path: rel, retry: always}
	if !fi.IsDir() {
		return t.do(ctx, spec, func(c *conn, g *guard) error {
			if err := c.sftp.Remove(abs); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return nil
		})
	}
	entries, err := t.readDir(ctx, "remove", rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// Files (and links) several at a time, then subdirectories one by one.
	var dirs []fs.FileInfo
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(removeWorkers)
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e)
			continue
		}
		g.Go(func() error { return t.removeAll(gctx, rel+"/"+e.Name(), e) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := t.removeAll(ctx, rel+"/"+d.Name(), d); err != nil {
			return err
		}
	}
	return t.do(ctx, spec, func(c *conn, g *guard) error {
		if err := c.sftp.RemoveDirectory(abs); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// readDir lists a directory (relative; "" is the root), dropping entries
// whose names cannot be one path element.
func (t *Target) readDir(ctx context.Context, op, rel string) ([]fs.FileInfo, error) {
	abs, shown := t.root, "."
	if rel != "" {
		abs, shown = path.Join(t.root, rel), rel
	}
	var entries []fs.FileInfo
	err := t.do(ctx, opSpec{name: op, path: shown, retry: always}, func(c *conn, g *guard) error {
		var err error
		if s := c.rawReady(); s != nil {
			var h []byte
			if h, err = handle(s.send(fxpOpendir, sftpStr(abs))); err == nil {
				entries, err = s.readDir(g, h)
			}
			return err
		}
		entries, err = c.sftp.ReadDir(abs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cleanEntries(entries), nil
}

// cleanEntries drops the entries whose names cannot be one path element
// and sorts the rest by name.
func cleanEntries(entries []fs.FileInfo) []fs.FileInfo {
	entries = slices.DeleteFunc(entries, func(e fs.FileInfo) bool {
		n := e.Name()
		return n == "" || n == "." || n == ".." || strings.ContainsRune(n, '/')
	})
	slices.SortFunc(entries, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return entries
}

// Walk calls fn for every regular file and symbolic link below dir ("" or
// "." for the root). It lists directories with the attributes the server
// reads without following links, and never descends into a link. Entries
// whose names are not valid prepcast paths are skipped. An error from fn
// stops the walk and is returned as is.
func (t *Target) Walk(ctx context.Context, dir string, fn func(targets.FileInfo) error) error {
	if dir == "" || dir == "." {
		return t.walkDir(ctx, "", fn)
	}
	abs, err := t.abs(dir)
	if err != nil {
		return t.opErr("walk", dir, err)
	}
	var fi fs.FileInfo
	var entries []fs.FileInfo // a directory is listed with its lstat
	err = t.do(ctx, opSpec{name: "walk", path: dir, retry: always}, func(c *conn, g *guard) error {
		var err error
		if s := c.rawReady(); s != nil {
			a, h, err := s.lstatOpendir(abs)
			if err != nil {
				return err
			}
			fi = &rawFileInfo{name: path.Base(abs), a: a}
			if h != nil {
				entries, err = s.readDir(g, h)
			}
			return err
		}
		// The listing is asked for with the lstat, and used only if the
		// lstat says a directory (a link is never listed).
		listing := background.GoErr(func() ([]fs.FileInfo, error) { return c.sftp.ReadDir(abs) })
		fi, err = c.sftp.Lstat(abs)
		if err == nil && fi.IsDir() {
			entries, err = listing()
		}
		return err
	})
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return targets.WalkVisit(dir, fi, fn)
	}
	return t.walkEntries(ctx, dir, cleanEntries(entries), fn)
}

func (t *Target) walkDir(ctx context.Context, rel string, fn func(targets.FileInfo) error) error {
	entries, err := t.readDir(ctx, "walk", rel)
	if err != nil {
		return err
	}
	return t.walkEntries(ctx, rel, entries, fn)
}

// walkEntries visits the entries of directory rel, descending into the
// subdirectories.
func (t *Target) walkEntries(ctx context.Context, rel string, entries []fs.FileInfo, fn func(targets.FileInfo) error) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return t.opErr("walk", rel, err)
		}
		child := e.Name()
		if rel != "" {
			child = rel + "/" + child
		}
		if err := safepath.CheckInternal(child); err != nil {
			t.log.Debug("sftp walk skips a name prepcast cannot use", zap.Error(err))
			continue
		}
		if e.IsDir() {
			if err := t.walkDir(ctx, child, fn); err != nil {
				return err
			}
			continue
		}
		if err := targets.WalkVisit(child, e, fn); err != nil {
			return err
		}
	}
	return nil
}

// FreeSpace returns the bytes available to the user on the filesystem
// holding the root, from statvfs@openssh.com; ok is false when the server
// does not offer it.
func (t *Target) FreeSpace(ctx context.Context) (int64, bool, error) {
	var free int64
	var ok bool
	err := t.do(ctx, opSpec{name: "free-space", retry: always}, func(c *conn, g *guard) error {
		if !c.feats.StatVFS {
			return nil
		}
		st, err := c.sftp.StatVFS(t.root)
		if err != nil {
			return err
		}
		unit := st.Frsize
		if unit == 0 {
			unit = st.Bsize
		}
		bytes := st.Bavail * unit
		if unit != 0 && bytes/unit != st.Bavail || bytes > math.MaxInt64 {
			bytes = math.MaxInt64
		}
		free, ok = int64(bytes), true
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return free, ok, nil
}
