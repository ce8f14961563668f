package publisher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/targets/targettest"
)

// A server that allows one session per connection (OpenSSH MaxSessions 1)
// gets every cut in one attempt, flushed on the main session, with no
// staging files left behind and the fallback reported in the result.
func TestMaxSessionsOnePushes(t *testing.T) {
	f := newFixture(t)
	srv := targettest.NewSFTPServer(t, "", targettest.WithMaxSessions(1), targettest.WithFsync())
	tg := sftpTarget(t, "maxsessions1", srv)
	eng := f.engine()
	for k := 1; k <= 2; k++ {
		ci := f.cut()
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
