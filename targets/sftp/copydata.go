package sftp

// Server-side range copies with OpenSSH's copy-data extension.
//
// pkg/sftp (v1.13) neither sends arbitrary extended requests nor exposes
// the handles of its open files, and copy-data names two open handles of
// the same session. So copy-data runs on a small SFTP version 3 client of
// its own, below: one extra "sftp" subsystem session on the connection's
// SSH client, opened on first use, speaking only the requests a range
// plan needs (open, read, write, fstat, close, copy-data), with every
// request pipelined and every reply bounded in size.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/targets"
)

var _ targets.RangeCopier = (*Target)(nil)

// SFTP version 3 packet types and flags used here
// (draft-ietf-secsh-filexfer-02).
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpStat          = 17
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201

	fxfRead  = 0x01
	fxfWrite = 0x02
	fxfCreat = 0x08
	fxfTrunc = 0x10

	fxOK            = 0
	fxEOF           = 1
	fxNoSuchFile    = 2
	fxPermDenied    = 3
	fxFailure       = 4
	fxOpUnsupported = 8

	attrSize        = 0x01
	attrUIDGID      = 0x02
	attrPermissions = 0x04
	attrACModTime   = 0x08
	attrExtended    = 0x80000000
)

const (
	// rawMaxPacket bounds a reply the server may send: OpenSSH's own
	// bound on an SFTP message (a directory listing of 100 long names
	// comes close to 64 KiB).
	rawMaxPacket = 256 << 10
	// rawChunk is the size of each literal write request.
	rawChunk = 32 << 10
	// rawWindow is how many requests a range write keeps in flight: a
	// plan has many small ranges (a few thousand for a 4 MB database with
	// 500 changed rows), and a distant server must never wait for the
	// next one. Copy requests are under 100 bytes; literal writes are
	// also bounded by rawWindowBytes.
	rawWindow = 1024
	// rawWindowBytes bounds the literal bytes in flight per range write.
	rawWindowBytes = 2 << 20
	// maxProbe bounds the probe bytes read from a source file.
	maxProbe = 4 << 10
)

// copyDataName is the extension as OpenSSH's sftp-server (9.0 and later)
// announces it, with version "1".
const copyDataName = "copy-data"

// CanCopyRanges reports whether the server offers copy-data, version 1,
// on the current connection (connecting if needed).
func (t *Target) CanCopyRanges(ctx context.Context) (bool, error) {
	c, err := t.getConn(ctx)
	if err != nil {
		return false, t.opErr("connect", "", err)
	}
	if !c.feats.CopyData {
		return false, nil
	}
	// Range copies run on a session of their own: a server that refuses
	// one more session (OpenSSH MaxSessions 1) gets whole files, never a
	// failed push. A session still opening counts as there (a range write
	// that finds it refused fails, and its file is sent whole).
	if err := c.rawFailed(); err != nil {
		t.log.Info("copy-data offered but no session for it; sending whole files", zap.Error(err))
		return false, nil
	}
	return true, nil
}

// WriteFileRanges implements [targets.RangeCopier] with copy-data. It is
// not retried on a new connection: the caller falls back to a whole-file
// upload on any error.
func (t *Target) WriteFileRanges(ctx context.Context, p, src string, plan *targets.RangePlan, lit io.ReaderAt) error {
	abs, err := t.abs(p)
	if err != nil {
		return t.opErr("write ranges", p, err)
	}
	absSrc, err := t.abs(src)
	if err != nil {
		return t.opErr("write ranges", p, err)
	}
	var absMark string
	if plan.SrcOlderThan != "" {
		if absMark, err = t.abs(plan.SrcOlderThan); err != nil {
			return t.opErr("write ranges", p, err)
		}
	}
	if len(plan.ProbeBytes) > maxProbe {
		return t.opErr("write ranges", p, fmt.Errorf("probe of %d bytes exceeds %d", len(plan.ProbeBytes), maxProbe))
	}
	return t.do(ctx, opSpec{name: "write ranges", path: p, wait: true}, func(c *conn, g *guard) error {
		if !c.feats.CopyData {
			return targets.Permanent(errors.New("server does not offer copy-data"))
		}
		s, err := c.rawSession()
		if err != nil {
			return err
		}
		t.warmSyncers(c) // the staged file is flushed by SyncFiles
		return s.writeRanges(g, abs, absSrc, absMark, plan, lit, plan.Flush && c.feats.Fsync)
	})
}

// waitPastMax bounds how long WaitPast waits for the server's clock.
const waitPastMax = 5 * time.Second

// WaitPast implements [targets.RangeCopier]: it writes one byte to marker
// and compares the marker's modification time with p's, until the
// marker's is later.
func (t *Target) WaitPast(ctx context.Context, p, marker string) error {
	absP, err := t.abs(p)
	if err != nil {
		return t.opErr("wait past", p, err)
	}
	absM, err := t.abs(marker)
	if err != nil {
		return t.opErr("wait past", p, err)
	}
	start := time.Now()
	for {
		var past bool
		var pm, mm int64
		err := t.do(ctx, opSpec{name: "wait past", path: p, retry: always}, func(c *conn, g *guard) error {
			s := c.rawReady()
			if s == nil {
				// On a new connection, before the pipelined session is
				// open: the SFTP client's session, as many round trips.
				var err error
				pm, mm, err = clockBySFTP(c, absP, absM)
				past = err == nil && mm > pm
				return err
			}
			statP := s.send(fxpStat, sftpStr(absP))
			h, err := handle(s.send(fxpOpen, sftpStr(absM), be32(fxfWrite|fxfCreat|fxfTrunc), be32(0)))
			pa, perr := attrs(statP)
			if err != nil {
				return err
			}
			hs := sftpStr(string(h))
			wch := s.send(fxpWrite, hs, be64(0), sftpStr("\n"))
			sch := s.send(fxpFstat, hs)
			cch := s.send(fxpClose, hs)
			werr := status(wch)
			ma, serr := attrs(sch)
			cerr := status(cch)
			if err := errors.Join(perr, werr, serr, cerr); err != nil {
				return err
			}
			if !pa.hasMtime || !ma.hasMtime {
				return targets.Permanent(errors.New("the server reports no modification times"))
			}
			pm, mm, past = pa.mtime, ma.mtime, ma.mtime > pa.mtime
			return nil
		})
		if err != nil || past {
			return err
		}
		if time.Since(start) > waitPastMax {
			return t.opErr("wait past", p, fmt.Errorf("the server's clock did not pass %s's time (%d) within %v (it reads %d)", p, pm, waitPastMax, mm))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// clockBySFTP returns the modification times of absP and of the marker
// absM, made modified now: the marker opened for writing and truncated
// (which marks it modified) while absP is stat'ed, then its fstat.
func clockBySFTP(c *conn, absP, absM string) (pm, mm int64, err error) {
	statP := background.GoErr(func() (fs.FileInfo, error) { return c.sftp.Stat(absP) })
	f, err := c.sftp.OpenFile(absM, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	fp, perr := statP()
	if err != nil {
		return 0, 0, err
	}
	defer func() { go f.Close() }()
	fm, err := f.Stat()
	if err = errors.Join(perr, err); err != nil {
		return 0, 0, err
	}
	if !hasTimes(fp) || !hasTimes(fm) {
		return 0, 0, targets.Permanent(errors.New("the server reports no modification times"))
	}
	return fp.ModTime().Unix(), fm.ModTime().Unix(), nil
}

// hasTimes reports whether the server sent times with fi.
func hasTimes(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*pkgsftp.FileStat)
	return ok && st.Mtime != 0
}

// rawHolder is the connection's copy-data session, opened on first use.
type rawHolder struct {
	mu  sync.Mutex // held while the session opens
	s   *rawSession
	err error
}

// rawSession returns the connection's copy-data session, opening it on
// first use; a session that failed to open is not tried again on this
// connection.
func (c *conn) rawSession() (*rawSession, error) {
	c.raw.mu.Lock()
	defer c.raw.mu.Unlock()
	if c.raw.s == nil && c.raw.err == nil {
		c.raw.s, c.raw.err = openRawSession(c.ssh)
	}
	if c.raw.s != nil {
		if err := c.raw.s.failed(); err != nil {
			return nil, err
		}
	}
	return c.raw.s, c.raw.err
}

// rawReady returns c's pipelined session if it is open and working, and
// nil (without waiting) while it opens, or where there is none: reads
// take it when it is there, and the SFTP client's session otherwise,
// which on a new connection is ready first.
func (c *conn) rawReady() *rawSession {
	if !c.feats.CopyData || !c.raw.mu.TryLock() {
		return nil
	}
	defer c.raw.mu.Unlock()
	if c.raw.s == nil || c.raw.s.failed() != nil {
		return nil
	}
	return c.raw.s
}

// rawFailed returns why c's pipelined session failed or could not open,
// and nil while it opens or works (without waiting).
func (c *conn) rawFailed() error {
	if !c.raw.mu.TryLock() {
		return nil // opening
	}
	defer c.raw.mu.Unlock()
	if c.raw.s != nil {
		return c.raw.s.failed()
	}
	return c.raw.err
}

// rawSession is a minimal SFTP v3 client: requests are written by any
// goroutine, and one reader hands each reply to the request with its id.
type rawSession struct {
	sess *ssh.Session
	w    io.WriteCloser
	exts map[string]string

	writing atomic.Int64 // bytes of small files reserved for writing (reserveWrite)
	wrote   atomic.Int64 // bytes of small files written

	wmu sync.Mutex // one packet at a time on w

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan rawReply
	err     error // set once the session failed
}

type rawReply struct {
	typ  byte
	data []byte // after the id
	err  error
}

// statusError is an SFTP status other than OK.
type statusError struct {
	code uint32
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("sftp status %d: %s", e.code, sanitize(e.msg))
}

func (e *statusError) Unwrap() error {
	switch e.code {
	case fxNoSuchFile:
		return fs.ErrNotExist
	case fxPermDenied:
		return fs.ErrPermission
	}
	return nil
}

// sanitize keeps a server message short and printable.
func sanitize(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

func openRawSession(cl *ssh.Client) (*rawSession, error) {
	sess, err := cl.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open a session for copy-data: %w", err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("start sftp subsystem for copy-data: %w", err)
	}
	s := &rawSession{sess: sess, w: w, pending: map[uint32]chan rawReply{}}
	if _, err := w.Write(packet(fxpInit, be32(3))); err != nil {
		_ = sess.Close()
		return nil, err
	}
	typ, body, err := readPacket(r)
	if err != nil || typ != fxpVersion || len(body) < 4 {
		_ = sess.Close()
		return nil, fmt.Errorf("sftp version reply for copy-data session: type %d: %v", typ, err)
	}
	s.exts = parseExtensions(body[4:])
	go s.readLoop(r)
	return s, nil
}

// parseExtensions reads the name/data pairs of a version reply.
func parseExtensions(b []byte) map[string]string {
	exts := map[string]string{}
	for len(b) > 0 {
		name, rest, ok := str(b)
		if !ok {
			break
		}
		data, rest, ok := str(rest)
		if !ok {
			break
		}
		exts[string(name)] = string(data)
		b = rest
	}
	return exts
}

func (s *rawSession) readLoop(r io.Reader) {
	for {
		typ, body, err := readPacket(r)
		if err == nil && len(body) < 4 {
			err = fmt.Errorf("sftp reply of type %d has no id", typ)
		}
		if err != nil {
			s.fail(fmt.Errorf("copy-data session: %w", err))
			return
		}
		id := binary.BigEndian.Uint32(body)
		s.mu.Lock()
		ch, ok := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if !ok {
			s.fail(fmt.Errorf("copy-data session: reply to unknown request %d", id))
			return
		}
		ch <- rawReply{typ: typ, data: body[4:]}
	}
}

// fail ends the session: every request in flight, and every later one,
// gets err.
func (s *rawSession) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	pend := s.pending
	s.pending = map[uint32]chan rawReply{}
	s.mu.Unlock()
	for _, ch := range pend {
		ch <- rawReply{err: err}
	}
	_ = s.sess.Close()
}

func (s *rawSession) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// send writes one request (type and the fields after its id) and returns
// the channel its reply arrives on.
func (s *rawSession) send(typ byte, fields ...[]byte) <-chan rawReply {
	ch := make(chan rawReply, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		ch <- rawReply{err: s.err}
		return ch
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = ch
	s.mu.Unlock()
	payload := append([][]byte{be32(id)}, fields...)
	s.wmu.Lock()
	_, err := s.w.Write(packet(typ, payload...))
	s.wmu.Unlock()
	if err != nil {
		s.fail(fmt.Errorf("copy-data session: send: %w", err))
	}
	return ch
}

// status waits for a status reply and returns nil for OK.
func status(ch <-chan rawReply) error {
	r := <-ch
	if r.err != nil {
		return r.err
	}
	if r.typ != fxpStatus {
		return fmt.Errorf("unexpected sftp reply type %d, want a status", r.typ)
	}
	return statusOf(r.data)
}

func statusOf(b []byte) error {
	if len(b) < 4 {
		return errors.New("short sftp status reply")
	}
	code := binary.BigEndian.Uint32(b)
	if code == fxOK {
		return nil
	}
	msg, _, _ := str(b[4:])
	return &statusError{code: code, msg: string(msg)}
}

// handle waits for a handle reply.
func handle(ch <-chan rawReply) ([]byte, error) {
	h, err := payload(ch, fxpHandle, "a handle")
	if err == nil && (len(h) == 0 || len(h) > 256) {
		return nil, errors.New("malformed sftp handle reply")
	}
	return h, err
}

// payload waits for a reply of type want (what names it in errors) and
// returns its string payload: a handle, or the data read.
func payload(ch <-chan rawReply, want byte, what string) ([]byte, error) {
	r := <-ch
	switch {
	case r.err != nil:
		return nil, r.err
	case r.typ == fxpStatus:
		if err := statusOf(r.data); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("sftp answered OK without %s", what)
	case r.typ != want:
		return nil, fmt.Errorf("unexpected sftp reply type %d, want %s", r.typ, what)
	}
	b, _, ok := str(r.data)
	if !ok {
		return nil, fmt.Errorf("malformed sftp reply: %s cut short", what)
	}
	return b, nil
}

// fileAttrs are the attributes of a file that a range write checks.
type fileAttrs struct {
	size     int64
	hasSize  bool
	mtime    int64 // Unix seconds
	hasMtime bool
	mode     uint32 // POSIX st_mode, when hasPerm
	perm     uint32 // its permission bits
	hasPerm  bool
}

// attrs waits for an attrs reply and returns the size (required) and
// modification time it carries.
func attrs(ch <-chan rawReply) (fileAttrs, error) {
	a, err := anyAttrs(ch)
	if err == nil && !a.hasSize {
		err = errors.New("sftp attributes without a size")
	}
	return a, err
}

// parseAttrs decodes the ATTRS structure at the start of b and returns
// what follows it.
func parseAttrs(b []byte) (fileAttrs, []byte, error) {
	var a fileAttrs
	short := errors.New("short sftp attributes")
	if len(b) < 4 {
		return a, nil, short
	}
	flags := binary.BigEndian.Uint32(b)
	b = b[4:]
	if flags&attrSize != 0 {
		if len(b) < 8 {
			return a, nil, short
		}
		a.size, a.hasSize = int64(binary.BigEndian.Uint64(b)), true
		b = b[8:]
	}
	if flags&attrUIDGID != 0 {
		if len(b) < 8 {
			return a, nil, short
		}
		b = b[8:]
	}
	if flags&attrPermissions != 0 {
		if len(b) < 4 {
			return a, nil, short
		}
		a.mode = binary.BigEndian.Uint32(b)
		a.perm, a.hasPerm = a.mode&0o7777, true
		b = b[4:]
	}
	if flags&attrACModTime != 0 {
		if len(b) < 8 {
			return a, nil, short
		}
		a.mtime, a.hasMtime = int64(binary.BigEndian.Uint32(b[4:])), true
		b = b[8:]
	}
	if flags&attrExtended != 0 {
		if len(b) < 4 {
			return a, nil, short
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		for i := uint32(0); i < n; i++ {
			var ok1, ok2 bool
			_, b, ok1 = str(b)
			if ok1 {
				_, b, ok2 = str(b)
			}
			if !ok1 || !ok2 {
				return a, nil, short
			}
		}
	}
	return a, b, nil
}

// data waits for a data reply.
func data(ch <-chan rawReply) ([]byte, error) { return payload(ch, fxpData, "data") }

// writeRanges opens src for reading and dst for writing, checks src (its
// size, the probe bytes, and that it was modified no later than the file
// olderThan, when set), sends the plan's copies and literal writes, checks
// dst's size and closes both. Everything is pipelined: the checks of src
// travel with the first copies (dst is only a staging file, so copies made
// before a failed check are harmless and the caller sends the file whole),
// and replies are awaited in order, up to rawWindow requests ahead.
func (s *rawSession) writeRanges(g *guard, dst, src, olderThan string, plan *targets.RangePlan, lit io.ReaderAt, flush bool) (err error) {
	srcOpen := s.send(fxpOpen, sftpStr(src), be32(fxfRead), be32(0))
	dstOpen := s.send(fxpOpen, sftpStr(dst), be32(fxfWrite|fxfCreat|fxfTrunc), be32(0))
	sh, serr := handle(srcOpen)
	dh, derr := handle(dstOpen)
	var closes []<-chan rawReply
	closeAll := func() {
		for _, h := range [][]byte{sh, dh} {
			if h != nil {
				closes = append(closes, s.send(fxpClose, sftpStr(string(h))))
			}
		}
		sh, dh = nil, nil
	}
	defer func() {
		closeAll()
		for _, ch := range closes {
			if cerr := status(ch); err == nil && cerr != nil {
				err = fmt.Errorf("close: %w", cerr)
			}
		}
	}()
	if serr != nil {
		return fmt.Errorf("open source %w: %w", targets.ErrSourceChanged, serr)
	}
	if derr != nil {
		return fmt.Errorf("open: %w", derr)
	}
	g.alive()
	shs, dhs := sftpStr(string(sh)), sftpStr(string(dh))

	// The source must be the version the plan was made for.
	stat := s.send(fxpFstat, shs)
	var probe, mark <-chan rawReply
	if plan.Probe >= 0 && len(plan.ProbeBytes) > 0 {
		probe = s.send(fxpRead, shs, be64(uint64(plan.Probe)), be32(uint32(len(plan.ProbeBytes))))
	}
	if olderThan != "" {
		mark = s.send(fxpStat, sftpStr(olderThan))
	}
	checked := false
	check := func() error {
		if checked {
			return nil
		}
		checked = true
		sa, err := attrs(stat)
		if err != nil {
			return fmt.Errorf("stat source: %w", err)
		}
		if sa.size != plan.SrcSize {
			return fmt.Errorf("%w: it has %d bytes, the plan expects %d", targets.ErrSourceChanged, sa.size, plan.SrcSize)
		}
		if probe != nil {
			b, err := data(probe)
			if err != nil {
				return fmt.Errorf("read source: %w", err)
			}
			if !bytes.Equal(b, plan.ProbeBytes) {
				return fmt.Errorf("%w: its content at offset %d differs", targets.ErrSourceChanged, plan.Probe)
			}
		}
		if mark != nil {
			ma, err := attrs(mark)
			if err != nil {
				return fmt.Errorf("%w: stat %s: %w", targets.ErrSourceChanged, plan.SrcOlderThan, err)
			}
			if !sa.hasMtime || !ma.hasMtime || sa.mtime > ma.mtime {
				return fmt.Errorf("%w: it was modified after %s (%d > %d)", targets.ErrSourceChanged, plan.SrcOlderThan, sa.mtime, ma.mtime)
			}
		}
		g.alive()
		return nil
	}
	// A failed check returns at once, whatever else failed; the replies
	// still due are read by the session and dropped.
	defer func() {
		if cerr := check(); cerr != nil {
			err = cerr
		}
	}()

	// Copies and literal writes, up to rawWindow requests and
	// rawWindowBytes literal bytes in flight. The checks' replies come
	// before the first copy's.
	type req struct {
		ch <-chan rawReply
		n  int
	}
	var inflight []req
	var inBytes int
	wait := func(keep, keepBytes int) error {
		for len(inflight) > keep || (len(inflight) > 0 && inBytes > keepBytes) {
			if err := check(); err != nil {
				return err
			}
			if err := status(inflight[0].ch); err != nil {
				return err
			}
			inBytes -= inflight[0].n
			inflight = inflight[1:]
			g.alive()
		}
		return nil
	}
	buf := make([]byte, rawChunk)
	for _, op := range plan.Ops {
		if op.Len <= 0 || op.Dst < 0 || op.Src < 0 {
			return targets.Permanent(fmt.Errorf("invalid range op %+v", op))
		}
		if op.Copy {
			if err := wait(rawWindow-1, rawWindowBytes); err != nil {
				return fmt.Errorf("copy-data: %w", err)
			}
			inflight = append(inflight, req{ch: s.send(fxpExtended, sftpStr(copyDataName),
				shs, be64(uint64(op.Src)), be64(uint64(op.Len)), dhs, be64(uint64(op.Dst)))})
			continue
		}
		for off := op.Dst; off < op.Dst+op.Len; {
			if g.quit.Load() {
				return &sourceError{errors.New("write cancelled")}
			}
			k := int(min(int64(rawChunk), op.Dst+op.Len-off))
			if _, err := lit.ReadAt(buf[:k], off); err != nil && !(errors.Is(err, io.EOF) && k > 0) {
				return &sourceError{err}
			}
			if err := wait(rawWindow-1, rawWindowBytes-k); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			// send copies the packet before returning, so buf can be reused.
			inflight = append(inflight, req{ch: s.send(fxpWrite, dhs, be64(uint64(off)), sftpStr(string(buf[:k]))), n: k})
			inBytes += k
			off += int64(k)
		}
	}
	// The size of the result, and the closes, travel behind the last
	// writes.
	final := s.send(fxpFstat, dhs)
	var sync <-chan rawReply
	if flush {
		sync = s.send(fxpExtended, sftpStr("fsync@openssh.com"), dhs)
	}
	closeAll()
	if err := wait(0, 0); err != nil {
		return fmt.Errorf("write ranges: %w", err)
	}
	if err := check(); err != nil {
		return err
	}
	da, err := attrs(final)
	if err != nil {
		return fmt.Errorf("stat after writing: %w", err)
	}
	if sync != nil {
		if err := status(sync); err != nil {
			return fmt.Errorf("fsync: %w", err)
		}
	}
	if da.size != plan.Size {
		return fmt.Errorf("server holds %d bytes after writing %d", da.size, plan.Size)
	}
	return nil
}

// packet frames an SFTP packet: length, type, then the fields as given.
func packet(typ byte, fields ...[]byte) []byte {
	n := 1
	for _, f := range fields {
		n += len(f)
	}
	b := make([]byte, 0, 4+n)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, typ)
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// readPacket reads one packet, refusing any longer than rawMaxPacket.
func readPacket(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > rawMaxPacket {
		return 0, nil, fmt.Errorf("sftp packet of %d bytes (at most %d expected)", n, rawMaxPacket)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[4], body, nil
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// sftpStr encodes an SFTP string: length, then bytes.
func sftpStr(s string) []byte {
	return append(be32(uint32(len(s))), s...)
}

// str decodes an SFTP string from the start of b.
func str(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}
