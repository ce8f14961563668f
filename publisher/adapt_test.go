package publisher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/state"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
	"github.com/prepcast/prepcast/targets/targettest"
)

// changeMany rewrites more files than a stage flushes as it writes them,
// so that the next cut's files are flushed apart, on the sessions that do
// that.
func (f *fixture) changeMany() {
	// (The last FilesInFlight files to start flush as they are written.)
	for i := range inlineFlushMax + 1 + defaultFilesInFlight {
		f.addLarge(fmt.Sprintf("actas/extra-%02d.bin", i), 100)
	}
}

// A server that allows one session per connection (OpenSSH MaxSessions 1)
// gets every cut in one attempt, flushed on the main session, with no
// staging files left behind and the fallback reported in the result.
func TestMaxSessionsOnePushes(t *testing.T) {
	f := newFixture(t)
	srv := targettest.NewSFTPServer(t, "", targettest.WithMaxSessions(1), targettest.WithFsync())
	tg := sftpTarget(t, "maxsessions1", srv)
	eng := f.engine()
	for k := 1; k <= 2; k++ {
		f.changeMany()
		ci := f.Cut()
		before := srv.Fsyncs()
		r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		if r.Attempts != 1 || r.Ack.Seq != ci.Seq {
			t.Errorf("cut %d: %d attempts, ack %d; want one attempt acknowledging %d", k, r.Attempts, r.Ack.Seq, ci.Seq)
		}
		if srv.Fsyncs() == before {
			t.Errorf("cut %d: nothing was flushed", k)
		}
		if !strings.Contains(r.Strategy, "fsync: main session") {
			t.Errorf("cut %d: strategy %q, want the main-session fallback reported", k, r.Strategy)
		}
		if des, err := os.ReadDir(filepath.Join(srv.Root, filepath.FromSlash(StagingDir))); err == nil && len(des) > 0 {
			t.Errorf("cut %d: staging holds %d files after the ack", k, len(des))
		}
		if got, want := readAll(t, tg, "json/main.json"), fmt.Sprintf(`{"corte":"json/c%03d/totales.json"}`, k); got != want {
			t.Errorf("cut %d: main.json = %q, want %q", k, got, want)
		}
	}
}

// A server whose extra sessions stall costs one timed-out attempt to find
// out; the state database remembers it, so the next process flushes on the
// main session from the start, until AdaptationMemory has passed.
func TestStalledSessionsRememberedAcrossProcesses(t *testing.T) {
	f := newFixture(t)
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := targettest.NewSFTPServer(t, "", targettest.WithStalledExtraSessions())
	clock := time.Now()
	process := func() Result { // a new process: new target, new engine
		t.Helper()
		tg, err := sftptarget.New(sftptarget.Config{Name: "proftpd", Address: srv.Addr, User: srv.User, Root: srv.Root,
			IdentityFile: srv.ClientKeyPath, HostKey: srv.HostKeyLine, OpTimeout: 400 * time.Millisecond}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer tg.Close()
		eng := f.engine()
		eng.DB = db
		eng.Now = func() time.Time { return clock }
		f.changeMany()
		f.Cut()
		r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	if r := process(); r.Attempts != 2 || !strings.Contains(r.Strategy, "an extra session failed") {
		t.Errorf("first process: %d attempts, strategy %q; want one timed-out attempt, then the main session", r.Attempts, r.Strategy)
	}
	if r := process(); r.Attempts != 1 || !strings.Contains(r.Strategy, "found in an earlier push") {
		t.Errorf("second process: %d attempts, strategy %q; want the main session from the start", r.Attempts, r.Strategy)
	}
	clock = clock.Add(AdaptationMemory + time.Hour)
	if r := process(); r.Attempts != 2 {
		t.Errorf("after AdaptationMemory: %d attempts, want extra sessions tried (and timed out) again", r.Attempts)
	}
}
