package sftp

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	pkgsftp "github.com/pkg/sftp"
	"go.uber.org/zap"

	"github.com/prepcast/prepcast/targets"
)

// What prepcast adapts to, per server. The choices are made from what the
// server announces at connect (extensions) and from what it refuses while
// in use (extra sessions); a refusal is remembered for the life of the
// Target, so that later connections go straight to the fallback.

// Defaults that [New] applies to zero Config modes.
const (
	// DefaultFileMode is the permission of every file prepcast writes.
	DefaultFileMode fs.FileMode = 0o644
	// DefaultDirMode is the permission of every directory prepcast creates.
	DefaultDirMode fs.FileMode = 0o755
)

// DefaultFsyncSessions is how many extra SFTP sessions SyncFiles opens when
// Config.FsyncSessions is 0. Measured on loopback OpenSSH (README, "Server
// compatibility"): two sessions flush about as fast as four or eight, and a
// third faster than the main session on a full push, while every extra
// session is one more server process on the difusor (ProFTPD with a
// transfer rate limit stalled and crashed with eight).
const DefaultFsyncSessions = 2

// errNoPosixRename is returned at connect by a server that cannot replace a
// file atomically, unless the operator allowed the fallback.
var errNoPosixRename = errors.New("server does not support posix-rename@openssh.com, which prepcast needs to replace files atomically " +
	"(OpenSSH's sftp-server and internal-sftp have it unless started with -P posix-rename; ProFTPD needs SFTPExtensions +posixRename). " +
	"To publish to this difusor anyway, with a window of about one round trip where a replaced file is missing, " +
	"set allow_non_atomic_replace: true for this target (README, Server compatibility)")

// Strategy is how a Target works with its server: what it picked from the
// server's extensions and refusals.
type Strategy struct {
	// Rename is "posix-rename" (atomic replace) or "remove-then-rename"
	// (servers without posix-rename, with allow_non_atomic_replace).
	Rename string
	// Fsync is "none" (the server has no fsync@openssh.com),
	// "main session" (flushes pipelined with the uploads), or
	// "N extra sessions".
	Fsync string
	// Reason says why a fallback was picked; empty for the defaults.
	Reason string
}

// String is the one-line form written to logs and the push summary.
func (s Strategy) String() string {
	out := "rename: " + s.Rename + ", fsync: " + s.Fsync
	if s.Reason != "" {
		out += " (" + s.Reason + ")"
	}
	return out
}

// Strategy reports what the target picked for its server; zero before the
// first connect.
func (t *Target) Strategy() Strategy {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.strategyLocked()
}

func (t *Target) strategyLocked() Strategy {
	if !t.connected {
		return Strategy{}
	}
	s := Strategy{Rename: "posix-rename"}
	var why []string
	if !t.feats.PosixRename {
		s.Rename = "remove-then-rename"
		why = append(why, "no posix-rename@openssh.com; allow_non_atomic_replace is set")
	}
	switch n := t.fsyncSessionsLocked(); {
	case !t.feats.Fsync:
		s.Fsync = "none"
		why = append(why, "no fsync@openssh.com")
	case n == 0:
		s.Fsync = "main session"
		switch r := t.sessionsRefused; {
		case t.recalled:
			why = append(why, "extra sessions did not work "+r)
		case strings.HasPrefix(r, "an extra session failed"):
			why = append(why, r)
		case r != "":
			why = append(why, "the server refuses extra sessions: "+r)
		}
	default:
		s.Fsync = fmt.Sprintf("%d extra sessions", n)
	}
	s.Reason = strings.Join(why, "; ")
	return s
}

// Adaptation implements [targets.Adapter]: the strategy when it is a
// fallback, "" for the defaults.
func (t *Target) Adaptation() string {
	s := t.Strategy()
	if s.Reason == "" && (s.Fsync == "" || s.Fsync == fmt.Sprintf("%d extra sessions", DefaultFsyncSessions)) {
		return ""
	}
	return s.String()
}

// tokenNoExtraSessions is what Learned returns once the server refused an
// extra session, or one failed under a flush.
const tokenNoExtraSessions = "sftp: no extra sessions"

// Learned implements [targets.Adapter]: a token when this Target found
// that extra sessions do not work on its server (not when it was told by
// Recall).
func (t *Target) Learned() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessionsRefused != "" && !t.recalled {
		return tokenNoExtraSessions
	}
	return ""
}

// Recall implements [targets.Adapter]: a token from Learned in an earlier
// process makes flushes start on the main session, without trying extra
// sessions (a stalled one costs an operation timeout to find out).
func (t *Target) Recall(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if token == tokenNoExtraSessions && t.sessionsRefused == "" {
		t.sessionsRefused, t.recalled = "found in an earlier push", true
	}
}

// fsyncSessionsLocked is how many extra sessions SyncFiles may open.
func (t *Target) fsyncSessionsLocked() int {
	if t.sessionsRefused != "" {
		return 0
	}
	return max(t.cfg.FsyncSessions, 0)
}

// announce logs the strategy once per Target, and again if it changes.
func (t *Target) announceLocked() {
	s := t.strategyLocked()
	if s == t.announced {
		return
	}
	t.announced = s
	t.log.Info("sftp server strategy", zap.String("strategy", s.String()),
		zap.Bool("posix_rename", t.feats.PosixRename), zap.Bool("fsync", t.feats.Fsync),
		zap.Bool("statvfs", t.feats.StatVFS), zap.Bool("hardlink", t.feats.Hardlink),
		zap.Bool("limits", t.feats.Limits), zap.Bool("copy_data", t.feats.CopyData))
}

// noteSessionsRefused remembers that the server refused an extra session:
// every later flush of this Target runs on the main session.
func (t *Target) noteSessionsRefused(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessionsRefused == "" {
		t.sessionsRefused = shortCause(err)
	}
	t.announceLocked()
}

// noteSessionsFailed remembers that an extra session died under a flush
// while the connection lived: every later flush of this Target runs on the
// main session.
func (t *Target) noteSessionsFailed(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessionsRefused == "" {
		t.sessionsRefused = "an extra session failed: " + shortCause(err)
	}
	t.announceLocked()
}

// dropSyncers closes the extra flush sessions of c.
func (c *conn) dropSyncers() {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	for _, cl := range c.syncers {
		_ = cl.Close()
	}
	c.syncers = nil
}

func shortCause(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// syncClients returns the SFTP sessions that flush files: extra sessions
// of their own, opened together on first use (or by warmSyncers) and kept
// for the connection, or the main session when the server refuses extra
// ones (OpenSSH MaxSessions 1) or the configuration asks for none. A
// refused session never fails the flush: it falls back to the sessions it
// has.
func (t *Target) syncClients(c *conn) ([]*pkgsftp.Client, error) {
	t.mu.Lock()
	want := t.fsyncSessionsLocked()
	t.mu.Unlock()
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	if missing := want - len(c.syncers); missing > 0 {
		// Each session costs a few round trips to open: open them at once.
		clients := make([]*pkgsftp.Client, missing)
		errs := make([]error, missing)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				clients[i], errs[i] = pkgsftp.NewClient(c.ssh)
			}()
		}
		wg.Wait()
		var refused error
		for i, cl := range clients {
			if errs[i] == nil {
				c.syncers = append(c.syncers, cl)
			} else if refused == nil {
				refused = errs[i]
			}
		}
		if refused != nil {
			if c.cause() != nil || isConnLoss(refused) {
				return nil, fmt.Errorf("open a session for fsync: %w", refused)
			}
			if len(c.syncers) == 0 {
				t.noteSessionsRefused(refused)
			}
		}
	}
	if len(c.syncers) == 0 {
		return []*pkgsftp.Client{c.sftp}, nil
	}
	return c.syncers, nil
}

// warmSyncers opens c's flush sessions in the background, once: the first
// write that defers its flush calls it, so that the sessions are ready
// when the first flush comes.
func (t *Target) warmSyncers(c *conn) {
	c.warmOnce.Do(func() {
		if c.feats.Fsync {
			go func() { _, _ = t.syncClients(c) }()
		}
	})
}

// renameFallback replaces newpath with oldpath on a server without
// posix-rename: a plain SSH_FXP_RENAME, atomic when newpath does not
// exist; if the server refuses it because newpath exists, newpath is
// removed and the rename sent at once, so a reader may find newpath
// missing for about one round trip.
func renameFallback(c *conn, oldpath, newpath string) error {
	err := c.sftp.Rename(oldpath, newpath)
	if err == nil {
		return nil
	}
	if renameUnsupported(err) {
		return targets.Permanent(fmt.Errorf("%w: %w", errCannotRename, err))
	}
	if !existsRefusal(err) {
		return err
	}
	// Some servers check newpath before oldpath: never remove newpath for
	// a rename that cannot happen.
	if _, serr := c.sftp.Lstat(oldpath); serr != nil {
		return serr
	}
	if rerr := c.sftp.Remove(newpath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return fmt.Errorf("remove before rename: %w", rerr)
	}
	return c.sftp.Rename(oldpath, newpath)
}

// errCannotRename is the reason a server that cannot rename at all is
// refused.
var errCannotRename = errors.New("the server cannot rename files (SSH_FXP_RENAME unsupported), so nothing can be put in place whole: " +
	"prepcast cannot publish to it; ask the difusor for an SFTP server with posix-rename@openssh.com (OpenSSH's sftp-server or internal-sftp)")

// renameUnsupported reports whether a server answered a rename with
// SSH_FX_OP_UNSUPPORTED.
func renameUnsupported(err error) bool {
	var se *pkgsftp.StatusError
	return errors.As(err, &se) && se.FxCode() == pkgsftp.ErrSSHFxOpUnsupported
}

// existsRefusal reports whether a plain rename failed the way servers
// refuse to overwrite: SSH_FX_FAILURE (OpenSSH, version 3) or
// SSH_FX_FILE_ALREADY_EXISTS (version 5 and later).
func existsRefusal(err error) bool {
	const fxFileAlreadyExists = 11
	var se *pkgsftp.StatusError
	if !errors.As(err, &se) {
		return false
	}
	return se.FxCode() == pkgsftp.ErrSSHFxFailure || uint32(se.FxCode()) == fxFileAlreadyExists
}

// fixMode makes sure the open file f has the configured mode: the server's
// umask decided its mode at creation. It changes the mode only when the
// server reports another one (or none), and checks the result where the
// server reports modes: a file the web server could not read is an error.
func (t *Target) fixMode(f *pkgsftp.File, fi fs.FileInfo) error {
	want := t.cfg.FileMode
	if rawMode(fi) != 0 && fi.Mode().Perm() == want {
		return nil
	}
	return t.setMode(func() error { return f.Chmod(want) }, f.Stat, want, "file")
}

// setMode sets a mode with chmod and checks what stat reports after it. A
// server that refuses to set modes (some map them, some have no setstat)
// is accepted as long as what it reports lets the web server read.
func (t *Target) setMode(chmod func() error, stat func() (fs.FileInfo, error), want fs.FileMode, kind string) error {
	cerr := chmod()
	if cerr != nil && !isStatus(cerr) {
		return fmt.Errorf("set mode %04o: %w", want, cerr)
	}
	after, err := stat()
	if err != nil {
		return fmt.Errorf("stat after setting mode: %w", err)
	}
	if err := t.checkMode(after, want, kind); err != nil {
		if cerr != nil {
			err = fmt.Errorf("%w; setting it failed: %v", err, cerr)
		}
		return targets.Permanent(err)
	}
	if cerr != nil {
		t.chmodWarn.Do(func() {
			t.log.Warn("sftp server refuses to set modes; what it reports is readable, so publishing goes on",
				zap.String("kind", kind), zap.Error(cerr))
		})
	}
	return nil
}

// checkMode checks a mode the server reports after prepcast set it. The
// bits that let the web server read must be there; other differences
// (servers that map modes, such as Windows OpenSSH) are logged once.
func (t *Target) checkMode(fi fs.FileInfo, want fs.FileMode, kind string) error {
	if rawMode(fi) == 0 {
		return nil // the server does not report modes: nothing to check
	}
	got := fi.Mode().Perm()
	if got == want {
		return nil
	}
	readable := fs.FileMode(0o444)
	if kind == "directory" {
		readable = 0o555
	}
	if got&want&readable != want&readable {
		return fmt.Errorf("the server reports mode %04o for a %s after prepcast set %04o: the web server could not read it (does the SFTP server force a mode, e.g. MySecureShell ForceRights?)", got, kind, want)
	}
	t.modeWarn.Do(func() {
		t.log.Warn("sftp server keeps other permission bits than configured (readable, so the site works)",
			zap.String("kind", kind), zap.String("want", fmt.Sprintf("%04o", want)), zap.String("got", fmt.Sprintf("%04o", got)))
	})
	return nil
}

// rawMode is the mode word the server sent, 0 when it sent none.
func rawMode(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*pkgsftp.FileStat); ok {
		return st.Mode
	}
	return uint32(fi.Mode())
}
