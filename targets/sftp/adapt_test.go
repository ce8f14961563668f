package sftp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"

	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// A server that allows one session per connection (OpenSSH MaxSessions 1)
// refuses the extra fsync sessions: every file is flushed on the main
// session, the refusal is remembered across connections, and the strategy
// says why.
func TestMaxSessionsOneFlushesOnTheMainSession(t *testing.T) {
	srv := newOSServer(t, targettest.WithMaxSessions(1), targettest.WithFsync())
	tg := newTarget(t, configFor(srv))
	ctx := t.Context()
	var names []string
	for i := range 20 {
		name := fmt.Sprintf("f%02d", i)
		if err := tg.WriteFileNoSync(ctx, name, strings.NewReader(name), int64(len(name))); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	for round := range 3 {
		if round == 2 {
			srv.DropConnections() // a new connection remembers the refusal
		}
		before := srv.Fsyncs()
		if err := tg.SyncFiles(ctx, names); err != nil {
			t.Fatalf("round %d: SyncFiles on a MaxSessions 1 server: %v, want the flush on the main session", round, err)
		}
		if got := srv.Fsyncs() - before; got != int64(len(names)) {
			t.Errorf("round %d: %d files flushed, want %d", round, got, len(names))
		}
	}
	st := tg.Strategy()
	if st.Fsync != "main session" || !strings.Contains(st.Reason, "refuses extra sessions") {
		t.Errorf("Strategy = %+v, want fsync on the main session because the server refuses extra sessions", st)
	}
	if a := tg.Adaptation(); !strings.Contains(a, "fsync: main session") {
		t.Errorf("Adaptation = %q, want the fallback described", a)
	}
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(srv.Root, n)); err != nil || string(b) != n {
			t.Errorf("%s holds %q (%v)", n, b, err)
		}
	}
}

// An extra session that dies under a flush (a server process crashing
// under load) does not fail the flush: it is done again on the main
// session, which flushes from then on.
func TestBrokenExtraSessionFallsBackToTheMainSession(t *testing.T) {
	srv := newOSServer(t, targettest.WithBrokenExtraSessions())
	tg := newTarget(t, configFor(srv))
	ctx := t.Context()
	var names []string
	for i := range 10 {
		name := fmt.Sprintf("f%02d", i)
		if err := tg.WriteFileNoSync(ctx, name, strings.NewReader(name), int64(len(name))); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := tg.SyncFiles(ctx, names); err != nil {
		t.Fatalf("SyncFiles with extra sessions that die: %v", err)
	}
	if got := srv.Fsyncs(); got < int64(len(names)) {
		t.Errorf("%d flushes answered, want at least %d", got, len(names))
	}
	if st := tg.Strategy(); st.Fsync != "main session" || !strings.Contains(st.Reason, "an extra session failed") {
		t.Errorf("Strategy = %+v, want the main session after an extra session failed", st)
	}
	before := srv.Fsyncs()
	if err := tg.SyncFiles(ctx, names); err != nil {
		t.Fatal(err)
	}
	if got := srv.Fsyncs() - before; got != int64(len(names)) {
		t.Errorf("second flush: %d answered, want %d on the main session", got, len(names))
	}
}

// FsyncSessions < 0 flushes on the main session without asking for more;
// the default opens DefaultFsyncSessions on a server that allows them.
func TestFsyncSessionsChoice(t *testing.T) {
	srv := newOSServer(t)
	for _, tc := range []struct {
		cfg, want int
	}{{-1, 0}, {0, DefaultFsyncSessions}, {5, 5}} {
		cfg := configFor(srv)
		cfg.FsyncSessions = tc.cfg
		tg := newTarget(t, cfg)
		c, err := tg.getConn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		clients, err := tg.syncClients(c)
		if err != nil {
			t.Fatal(err)
		}
		main := len(clients) == 1 && clients[0] == c.sftp
		if got := len(clients); (tc.want == 0 && !main) || (tc.want > 0 && (main || got != tc.want)) {
			t.Errorf("FsyncSessions %d: %d sessions (main %v), want %d extra", tc.cfg, got, main, tc.want)
		}
	}
}

// Files and directories get the configured modes, not what the server's
// umask gives them (the in-process server creates 0644 and 0755).
func TestModesAreSetWhateverTheServerCreates(t *testing.T) {
	srv := newOSServer(t)
	cfg := configFor(srv)
	cfg.FileMode, cfg.DirMode = 0o640, 0o750
	tg := newTarget(t, cfg)
	ctx := t.Context()
	if err := tg.MkdirAll(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if err := tg.WriteFile(ctx, "a/b/f", strings.NewReader("hola"), 4); err != nil {
		t.Fatal(err)
	}
	if err := tg.WriteFileNoSync(ctx, "a/g", strings.NewReader("hola"), 4); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"a": 0o750, "a/b": 0o750, "a/b/f": 0o640, "a/g": 0o640} {
		fi, err := os.Stat(filepath.Join(srv.Root, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %04o, want %04o", p, got, want)
		}
	}
	// A file that exists with another mode is fixed when written again.
	if err := os.Chmod(filepath.Join(srv.Root, "a/g"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tg.WriteFile(ctx, "a/g", strings.NewReader("adios"), 5); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(srv.Root, "a/g")); fi.Mode().Perm() != 0o640 {
		t.Errorf("a/g rewritten has mode %04o, want 0640", fi.Mode().Perm())
	}
}

// Without posix-rename the server is refused with the fix, unless the
// operator allows remove-then-rename; then a new path is renamed into
// place and an existing one replaced, on a server that (like OpenSSH)
// refuses a plain rename onto an existing file.
func TestNoPosixRenameFallback(t *testing.T) {
	srv := targettest.NewSFTPServer(t, "/www", targettest.WithMemFS(), targettest.WithoutPosixRename())
	refused := newTarget(t, configFor(srv))
	err := refused.Connect(t.Context())
	if !targets.IsPermanent(err) || !strings.Contains(err.Error(), "allow_non_atomic_replace: true") {
		t.Fatalf("Connect without the opt-in: %v, want a permanent refusal naming allow_non_atomic_replace", err)
	}

	cfg := configFor(srv)
	cfg.AllowNonAtomicReplace = true
	tg := newTarget(t, cfg)
	ctx := t.Context()
	write := func(p, s string) {
		t.Helper()
		if err := tg.WriteFile(ctx, p, strings.NewReader(s), int64(len(s))); err != nil {
			t.Fatal(err)
		}
	}
	write("s1", "first")
	if err := tg.Rename(ctx, "s1", "main.json"); err != nil {
		t.Fatalf("rename to a new path: %v", err)
	}
	write("s2", "second")
	if err := tg.Rename(ctx, "s2", "main.json"); err != nil {
		t.Fatalf("rename over an existing path: %v", err)
	}
	if b, err := tg.ReadFile(ctx, "main.json"); err != nil || string(b) != "second" {
		t.Fatalf("main.json = %q, %v; want the replacing content", b, err)
	}
	if _, err := tg.ReadFile(ctx, "s2"); err == nil {
		t.Error("the staged name still exists after the rename")
	}
	if st := tg.Strategy(); st.Rename != "remove-then-rename" {
		t.Errorf("Strategy = %+v, want remove-then-rename", st)
	}
	// A missing source is reported as missing, not papered over.
	if err := tg.Rename(ctx, "gone", "main.json"); err == nil {
		t.Error("rename of a missing file succeeded")
	}
	if b, _ := tg.ReadFile(ctx, "main.json"); string(b) != "second" {
		t.Errorf("a failed rename changed main.json to %q", b)
	}
}

// An extra session that stops answering flushes (ProFTPD stuck under a
// transfer rate limit) times the flush out once; the next flush, on a new
// connection, runs on the main session and succeeds.
func TestStalledExtraSessionFallsBackToTheMainSession(t *testing.T) {
	srv := newOSServer(t, targettest.WithStalledExtraSessions())
	cfg := configFor(srv)
	cfg.OpTimeout = 500 * time.Millisecond
	tg := newTarget(t, cfg)
	ctx := t.Context()
	if err := tg.WriteFileNoSync(ctx, "f", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	err := tg.SyncFiles(ctx, []string{"f"})
	if !errors.Is(err, os.ErrDeadlineExceeded) || !targets.IsRetryable(err) {
		t.Fatalf("first flush: %v, want a retryable timeout", err)
	}
	if err := tg.SyncFiles(ctx, []string{"f"}); err != nil {
		t.Fatalf("second flush: %v, want it done on the main session", err)
	}
	if st := tg.Strategy(); st.Fsync != "main session" || !strings.Contains(st.Reason, "an extra session failed") {
		t.Errorf("Strategy = %+v, want the main session after a stalled extra session", st)
	}
}

// How plain-rename answers are read: "exists" refusals lead to
// remove-then-rename, an unsupported rename refuses the server for good.
func TestRenameAnswers(t *testing.T) {
	st := func(code uint32) error { return &pkgsftp.StatusError{Code: code} }
	for _, tc := range []struct {
		err                 error
		exists, unsupported bool
	}{
		{st(4), true, false},  // SSH_FX_FAILURE: OpenSSH's link() hit EEXIST
		{st(11), true, false}, // SSH_FX_FILE_ALREADY_EXISTS (version 5+)
		{st(8), false, true},  // SSH_FX_OP_UNSUPPORTED
		{st(2), false, false}, // no such file
		{st(3), false, false}, // permission denied
		{errors.New("connection lost"), false, false},
	} {
		if got := existsRefusal(tc.err); got != tc.exists {
			t.Errorf("existsRefusal(%v) = %v", tc.err, got)
		}
		if got := renameUnsupported(tc.err); got != tc.unsupported {
			t.Errorf("renameUnsupported(%v) = %v", tc.err, got)
		}
	}
}
