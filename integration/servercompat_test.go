package integration

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/publisher"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// Servers as difusores configure them, beyond the defaults: prepcast
// adapts (extra sessions refused, a restrictive umask, no posix-rename)
// and every cut still arrives whole and readable.

// compatTarget is a target for s with changes to the test defaults.
func (e *env) compatTarget(name string, s *sshdtest.Server, edit func(*sftptarget.Config)) *sftptarget.Target {
	e.t.Helper()
	cfg := sftptarget.Config{Name: name, Address: s.Addr(), User: s.User(), Root: s.Root(),
		IdentityFile: s.ClientKeyPath(), HostKey: s.HostKeyLine(),
		DialTimeout: 5 * time.Second, OpTimeout: 10 * time.Second, Keepalive: 2 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	tg, err := sftptarget.New(cfg, zaptest.NewLogger(e.t).Named(name))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { tg.Close() })
	return tg
}

// stagingLeft lists what the staging directory of a webroot holds.
func stagingLeft(t *testing.T, web string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(web, filepath.FromSlash(publisher.StagingDir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

// checkModes fails unless every file below web has fileMode and every
// directory below it dirMode: what a web server running as another user
// needs to serve them.
func checkModes(t *testing.T, web string, fileMode, dirMode fs.FileMode) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(web, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == web {
			return err
		}
		if d.IsDir() && d.Name() == ".prepcast" {
			return filepath.SkipDir // private, never served
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fileMode
		if d.IsDir() {
			want = dirMode
		}
		if got := fi.Mode().Perm(); got != want {
			rel, _ := filepath.Rel(web, p)
			t.Errorf("%s has mode %04o, want %04o", rel, got, want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing was published")
	}
}

// OpenSSH with MaxSessions 1 refuses the extra fsync sessions: prepcast
// flushes on the main session, says so, and publishes consecutive cuts
// with no staging files left behind.
func TestMaxSessionsOneServer(t *testing.T) {
	e := newEnv(t, 0)
	s := sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"MaxSessions 1"}})
	tg := e.compatTarget("maxsessions1", s, nil)
	eng := e.engine()
	for k := 1; k <= 2; k++ {
		ci := e.nextCut()
		r := eng.Push(context.Background(), e.specs(tg))[0]
		if r.Err != nil {
			t.Fatalf("cut %d on a MaxSessions 1 server: %v", k, r.Err)
		}
		if r.Attempts != 1 {
			t.Errorf("cut %d took %d attempts: a refused session must not fail an attempt", k, r.Attempts)
		}
		e.checkTarget(s.WebRoot(), ci.Seq)
		if left := stagingLeft(t, s.WebRoot()); len(left) > 0 {
			t.Errorf("cut %d left staging files: %v", k, left)
		}
		if !strings.Contains(r.Strategy, "fsync: main session") || !strings.Contains(r.Strategy, "refuses extra sessions") {
			t.Errorf("cut %d: strategy %q, want fsync on the main session because the server refuses extra sessions", k, r.Strategy)
		}
	}
}

// A difusor whose SFTP server applies umask 0077 (internal-sftp -u 0077)
// still serves a readable site: files 0644, directories 0755, over two
// consecutive cuts.
func TestRestrictiveUmaskServer(t *testing.T) {
	e := newEnv(t, 0)
	s := sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp internal-sftp -u 0077"}})
	tg := e.compatTarget("umask0077", s, nil)
	eng := e.engine()
	for k := 1; k <= 2; k++ {
		ci := e.nextCut()
		r := eng.Push(context.Background(), e.specs(tg))[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		e.checkTarget(s.WebRoot(), ci.Seq)
		checkModes(t, s.WebRoot(), 0o644, 0o755)
	}
	// Modes other than the defaults are honoured too.
	tg2 := e.compatTarget("umask0077-b", s, func(c *sftptarget.Config) { c.FileMode, c.DirMode = 0o664, 0o775 })
	if err := os.RemoveAll(filepath.Join(s.WebRoot(), ".prepcast")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"actas", "datos", "json", ".well-known"} {
		if err := os.RemoveAll(filepath.Join(s.WebRoot(), d)); err != nil {
			t.Fatal(err)
		}
	}
	ci := e.nextCut()
	if r := eng.Push(context.Background(), e.specs(tg2))[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	e.checkTarget(s.WebRoot(), ci.Seq)
	checkModes(t, s.WebRoot(), 0o664, 0o775)
}

// missWatch polls a pointer and records how often, and for how long at
// most, it was missing; whenever it is there, check must pass.
type missWatch struct {
	stop    atomic.Bool
	wg      sync.WaitGroup
	reads   int
	misses  int
	windows int // distinct stretches of misses
	cuts    int
	longest time.Duration
	other   error
}

func watchMissing(p string, check func() (string, error)) *missWatch {
	w := &missWatch{}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var since time.Time
		last := ""
		for i := 0; !w.stop.Load(); i++ {
			time.Sleep(100 * time.Microsecond)
			_, err := os.Stat(p)
			now := time.Now()
			w.reads++
			if errors.Is(err, fs.ErrNotExist) {
				w.misses++
				if since.IsZero() {
					since = now
				}
				continue
			}
			if !since.IsZero() {
				w.longest = max(w.longest, now.Sub(since))
				w.windows++
				since = time.Time{}
			}
			if i%16 != 0 {
				continue // check the whole site now and then; time the pointer closely
			}
			key, err := check()
			if errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "names a missing file") {
				continue // replaced between the Stat and the read
			}
			if err != nil {
				w.other = err
				return
			}
			if key != last {
				w.cuts++
				last = key
			}
		}
	}()
	return w
}

func (w *missWatch) finish() {
	w.stop.Store(true)
	w.wg.Wait()
}

// A server without posix-rename (internal-sftp -P posix-rename) is refused
// with the fix unless allow_non_atomic_replace is set; with it, cuts are
// published whole, new files appear whole, and a reader polling
// json/main.json finds it missing only for the short remove-then-rename
// window, measured here.
func TestNoPosixRenameServer(t *testing.T) {
	e := newEnv(t, 0)
	s := sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp internal-sftp -P posix-rename"}})
	eng := e.engine()
	c1 := e.nextCut()

	refused := e.compatTarget("no-posix-rename", s, nil)
	r := eng.Push(context.Background(), e.specs(refused))[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "allow_non_atomic_replace") || r.Attempts != 1 {
		t.Fatalf("push without the opt-in: %v after %d attempts, want one refusal naming allow_non_atomic_replace", r.Err, r.Attempts)
	}
	if des, _ := os.ReadDir(s.WebRoot()); len(des) != 0 {
		t.Fatalf("a refused target got files: %v", des)
	}

	tg := e.compatTarget("no-posix-rename-ok", s, func(c *sftptarget.Config) { c.AllowNonAtomicReplace = true })
	r = eng.Push(context.Background(), e.specs(tg))[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	e.checkTarget(s.WebRoot(), c1.Seq)
	if !strings.Contains(r.Strategy, "remove-then-rename") {
		t.Errorf("strategy %q, want remove-then-rename", r.Strategy)
	}

	// The reader race: a reader polls json/main.json (with a pause, so
	// that it does not starve the server of CPU and stretch the window it
	// measures), and checks that every file it names is there whole: new
	// files are never missing; main.json itself may be, briefly.
	web := s.WebRoot()
	watch := watchMissing(filepath.Join(web, "json", "main.json"), servedSiteCheck(web))
	const cuts = 6
	var last int64
	for k := 0; k < cuts; k++ {
		ci := e.nextCut()
		if r := eng.Push(context.Background(), e.specs(tg))[0]; r.Err != nil {
			t.Fatalf("cut %d: %v", ci.Seq, r.Err)
		}
		last = ci.Seq
	}
	watch.finish()
	if watch.other != nil {
		t.Fatal(watch.other)
	}
	if watch.cuts < 2 {
		t.Fatalf("the reader saw %d cuts in %d reads: it exercised nothing", watch.cuts, watch.reads)
	}
	e.checkTarget(web, last)
	t.Logf("remove-then-rename window: json/main.json missing in %d of %d reads (%d windows) over %d cuts, longest %v",
		watch.misses, watch.reads, watch.windows, cuts, watch.longest)
}

// How much flushing on fewer sessions costs: a full push of a cut with 400
// new images and three incremental cuts of 40 new images each to a fresh OpenSSH server, for each
// fsync_sessions setting, interleaved. Run it with
// PREPCAST_MEASURE_FSYNC=1 (it takes about a minute); the numbers are in
// the README, "Server compatibility".
func TestMeasureFsyncSessions(t *testing.T) {
	if os.Getenv("PREPCAST_MEASURE_FSYNC") == "" {
		t.Skip("a measurement: set PREPCAST_MEASURE_FSYNC=1 to run it")
	}
	settings := []int{-1, 1, 2, 4, 8}
	totals := map[int][]time.Duration{}
	for round := 0; round < 3; round++ {
		for _, n := range settings {
			e := newEnv(t, 0)
			e.gen.imagesPerCut = 400
			s := sshdtest.Start(t, sshdtest.Options{})
			tg := e.compatTarget("fsync", s, func(c *sftptarget.Config) { c.FsyncSessions = n })
			eng := e.engine()
			var took []time.Duration
			for k := 0; k < 4; k++ {
				if k > 0 {
					e.gen.imagesPerCut = 40
				}
				e.nextCut()
				start := time.Now()
				if r := eng.Push(context.Background(), e.specs(tg))[0]; r.Err != nil {
					t.Fatal(r.Err)
				}
				took = append(took, time.Since(start))
			}
			_ = s.Close()
			totals[n] = append(totals[n], took...)
			t.Logf("round %d fsync_sessions %d: full %v, incremental %v %v %v", round, n, took[0], took[1], took[2], took[3])
		}
	}
	for _, n := range settings {
		var full, inc time.Duration
		for i, d := range totals[n] {
			if i%4 == 0 {
				full += d
			} else {
				inc += d
			}
		}
		t.Logf("fsync_sessions %d: full push %v, incremental %v (means)", n, full/3, inc/9)
	}
}
