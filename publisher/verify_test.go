package publisher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
	"github.com/prepcast/prepcast/targets/targettest"
)

// sameSizeChange rewrites the file at rel below root with other bytes of
// the same length, as an attacker or a broken disk would.
func sameSizeChange(t *testing.T, root, rel string) []byte {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	orig := slices.Clone(data)
	data[len(data)/2] ^= 0x20
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return orig
}

func openDB(t *testing.T) *state.DB {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rotatingPush pushes the fixture's latest cut to tg with a new Engine (as
// cron runs a new process) that keeps the rotation's position in db;
// filesInFlight 0 is the default.
func rotatingPush(t *testing.T, f *fixture, tg targets.Target, db *state.DB, budget VerifyBudget, filesInFlight int) Result {
	t.Helper()
	eng := f.engine()
	eng.DB, eng.Rotation, eng.FilesInFlight = db, budget, filesInFlight
	r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r
}

// TestRotationFindsSameSizeChange changes a served file without changing
// its size and checks that the rotating verification finds it and repairs
// it within the pushes the budget promises (period/every), each push made
// by a new Engine (as cron runs a new process), so the rotation's position
// lives in the state database.
func TestRotationFindsSameSizeChange(t *testing.T) {
	f := newFixture(t)
	for range 12 {
		f.Cut() // twelve acta images, so the rotation has something to rotate over
	}
	srv := targettest.NewSFTPServer(t, "")
	tg := sftpTarget(t, "t", srv)
	db := openDB(t)
	budget := VerifyBudget{Period: time.Hour, Every: 10 * time.Minute} // 1/6 of the cut per push
	push := func() Result { return rotatingPush(t, f, tg, db, budget, 0) }
	push()
	m, _, err := f.Store.Manifest(12)
	if err != nil {
		t.Fatal(err)
	}
	victim := "json/c012/totales.json" // near the end of the rotation
	orig := sameSizeChange(t, srv.Root, victim)

	rounds := int(budget.Period / budget.Every)
	checked := 0
	for n := 1; ; n++ {
		if n > rounds {
			t.Fatalf("%s changed at the same size is not found after %d pushes (budget: every file within %d)", victim, n-1, rounds)
		}
		r := push()
		checked += r.Verified
		if r.Verified == 0 || r.Verified >= len(m.Entries)/2 {
			t.Errorf("push %d checked %d files of %d, want a slice (about 1/%d of the files and of the bytes)", n, r.Verified, len(m.Entries), rounds)
		}
		if len(r.Repaired) == 0 {
			continue
		}
		if !slices.Equal(r.Repaired, []string{victim}) {
			t.Fatalf("push %d repaired %v, want only %s", n, r.Repaired, victim)
		}
		if n == 1 {
			t.Errorf("found by the first push: the rotation read more than its slice")
		}
		t.Logf("found and repaired after %d pushes (%d files checked; cut of %d files, budget %d pushes)", n, checked, len(m.Entries), rounds)
		break
	}
	got, _ := os.ReadFile(filepath.Join(srv.Root, victim))
	if string(got) != string(orig) {
		t.Fatalf("%s was not restored to the signed bytes", victim)
	}
	vs, err := db.Verify(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if vs.Mismatches != 1 || len(vs.Pending) != 0 || !slices.Equal(vs.Repaired, []string{victim}) || vs.RepairedAt.IsZero() {
		t.Errorf("verify record = %+v, want 1 mismatch, none pending, %s repaired", vs, victim)
	}
}

// slowReads is a target whose server sends slowly: each read-back takes
// delay, and it records the files read back whole.
type slowReads struct {
	*sftptarget.Target
	delay time.Duration
	mu    sync.Mutex
	read  map[string]int
}

func (s *slowReads) HashFile(ctx context.Context, p string, max int64) ([32]byte, int64, error) {
	select {
	case <-ctx.Done():
		return [32]byte{}, 0, ctx.Err()
	case <-time.After(s.delay):
	}
	sum, n, err := s.Target.HashFile(ctx, p, max)
	if err == nil {
		s.mu.Lock()
		s.read[p]++
		s.mu.Unlock()
	}
	return sum, n, err
}

// TestRotationStopsAtItsTimeBudget: on a difusor that sends slowly, a push
// reads back only as long as VerifyBudget.Time allows, and the next push
// resumes at the first file left unread, so that every file is still
// checked, none skipped, and a change is found and repaired.
func TestRotationStopsAtItsTimeBudget(t *testing.T) {
	f := newFixture(t)
	for range 6 {
		f.Cut()
	}
	srv := targettest.NewSFTPServer(t, "")
	tg := &slowReads{Target: sftpTarget(t, "t", srv), delay: 30 * time.Millisecond, read: map[string]int{}}
	db := openDB(t)
	budget := VerifyBudget{Files: 1000, Time: 100 * time.Millisecond} // every file, but about 3 fit in the time
	push := func() Result { return rotatingPush(t, f, tg, db, budget, 1) }
	push()
	m, _, err := f.Store.Manifest(6)
	if err != nil {
		t.Fatal(err)
	}
	victim := m.Entries[len(m.Entries)-2].Path
	orig := sameSizeChange(t, srv.Root, victim)
	tg.mu.Lock()
	clear(tg.read)
	tg.mu.Unlock()
	found := false
	for n := 1; ; n++ {
		if n > len(m.Entries) {
			t.Fatalf("after %d pushes %d of the cut's %d files were read back (found the change: %v)", n-1, len(tg.read), len(m.Entries), found)
		}
		r := push()
		if 2*r.Verified > len(m.Entries) {
			t.Fatalf("push %d checked %d of %d files: the time budget did not stop it", n, r.Verified, len(m.Entries))
		}
		found = found || slices.Contains(r.Repaired, victim)
		tg.mu.Lock()
		covered := len(tg.read)
		tg.mu.Unlock()
		if covered == len(m.Entries) && found {
			t.Logf("every file read back in %d pushes of about %v each; %s repaired", n, budget.Time, victim)
			break
		}
	}
	if got, _ := os.ReadFile(filepath.Join(srv.Root, victim)); string(got) != string(orig) {
		t.Fatalf("%s was not restored to the signed bytes", victim)
	}
	for p, n := range tg.read {
		if n > 2 {
			t.Errorf("%s read back %d times in one round: the rotation did not resume where it stopped", p, n)
		}
	}
}

// TestRotationSliceCoversTheCutWithinThePeriod checks the budget: every
// entry of a cut with files of very different sizes is checked within
// Period/Every pushes, starting anywhere; and explicit budgets are upper
// bounds.
func TestRotationSliceCoversTheCutWithinThePeriod(t *testing.T) {
	m := &packager.Manifest{}
	for i := range 1000 {
		size := int64(100)
		if i%7 == 0 {
			size = 5 << 20 // an acta image among JSON files
		}
		m.Entries = append(m.Entries, packager.Entry{Path: fmt.Sprintf("f/%04d", i), Size: size})
	}
	for _, b := range []VerifyBudget{
		{Period: 24 * time.Hour, Every: 10 * time.Minute},
		{Period: 24 * time.Hour, Every: 15 * time.Minute},
		{Period: time.Hour, Every: 7 * time.Minute},
	} {
		pushes := int((b.Period + b.Every - 1) / b.Every)
		for _, start := range []string{"", "f/0500", "f/0999", "zzz"} {
			seen := map[string]bool{}
			from := start
			for range pushes {
				var picked []packager.Entry
				picked, from, _ = b.slice(m, from)
				for _, e := range picked {
					seen[e.Path] = true
				}
			}
			if len(seen) != len(m.Entries) {
				t.Errorf("%+v from %q: %d of %d files checked in %d pushes", b, start, len(seen), len(m.Entries), pushes)
			}
		}
	}
	for _, b := range []VerifyBudget{{Bytes: 1 << 20}, {Files: 10}, {Bytes: 6 << 20, Files: 50}} {
		from := ""
		for range 200 {
			var picked []packager.Entry
			picked, from, _ = b.slice(m, from)
			var bytes int64
			for _, e := range picked {
				bytes += e.Size
			}
			switch {
			case len(picked) == 0:
				t.Fatalf("%+v: a push checked nothing", b)
			case b.Files > 0 && len(picked) > b.Files:
				t.Fatalf("%+v: %d files in one push", b, len(picked))
			case b.Bytes > 0 && bytes > b.Bytes && len(picked) > 1:
				t.Fatalf("%+v: %d bytes in one push", b, bytes)
			}
		}
	}
}

// TestReconcileHashesSameSizeFiles: a target without a usable ack holds a
// file of the cut at the right size with other bytes; reconciling by
// listing must send it again, not accept it by its size.
func TestReconcileHashesSameSizeFiles(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	srv := targettest.NewSFTPServer(t, "")
	tg := sftpTarget(t, "t", srv)
	eng := f.engine()
	if r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	orig := sameSizeChange(t, srv.Root, "actas/001.jpg")
	os.WriteFile(filepath.Join(srv.Root, ".prepcast", "ack.json"), []byte("{garbage"), 0o644)
	f.Cut()
	r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if !r.Reconciled {
		t.Fatal("the target was not reconciled")
	}
	if got, _ := os.ReadFile(filepath.Join(srv.Root, "actas/001.jpg")); string(got) != string(orig) {
		t.Fatal("reconcile accepted a same-size file with other content")
	}
}

// TestPushVerifyHashesLargeFiles: push --verify reads back every file,
// however large (it used to stop at 4 MiB), and repairs a same-size change.
func TestPushVerifyHashesLargeFiles(t *testing.T) {
	f := newFixture(t)
	big := strings.Repeat("acta escaneada ", 6<<20/15)
	os.MkdirAll(filepath.Join(f.Src, "actas"), 0o755)
	os.WriteFile(filepath.Join(f.Src, "actas/grande.jpg"), []byte(big), 0o644)
	f.Cut()
	mem := targettest.NewMem("m")
	eng := f.engine()
	if r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	data, _ := mem.File("actas/grande.jpg")
	data = slices.Clone(data)
	data[5<<20] ^= 1
	mem.SetFile("actas/grande.jpg", data)
	eng.Verify = true
	r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if !slices.Equal(r.Repaired, []string{"actas/grande.jpg"}) {
		t.Fatalf("repaired %v, want the altered 6 MiB file", r.Repaired)
	}
	if got, _ := mem.File("actas/grande.jpg"); string(got) != big {
		t.Fatal("the large file was not restored")
	}
}

// TestHostileAckIsBounded: an ack.json far larger than any ack of the cut,
// and one that links to /dev/zero, are refused promptly (read with a
// bound) and the target is reconciled and acknowledged afresh.
func TestHostileAckIsBounded(t *testing.T) {
	for _, kind := range []string{"huge", "dev-zero"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			f.Cut()
			srv := targettest.NewSFTPServer(t, "")
			tg := sftpTarget(t, "t", srv)
			eng := f.engine()
			if r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]; r.Err != nil {
				t.Fatal(r.Err)
			}
			ack := filepath.Join(srv.Root, ".prepcast", "ack.json")
			os.Remove(ack)
			if kind == "huge" {
				fh, err := os.Create(ack)
				if err != nil {
					t.Fatal(err)
				}
				fh.Truncate(600 << 20) // sparse: 600 MB that cost no disk
				fh.Close()
			} else if err := os.Symlink("/dev/zero", ack); err != nil {
				t.Fatal(err)
			}
			m, _, _ := f.Store.Manifest(1)
			start := time.Now()
			_, err := targets.ReadFileMax(context.Background(), tg, AckPath, AckMax(len(m.Entries)))
			if !errors.Is(err, targets.ErrTooLarge) || !strings.Contains(err.Error(), AckPath) || !strings.Contains(err.Error(), "sftp t") {
				t.Fatalf("read of a hostile ack: %v, want ErrTooLarge naming the difusor and the file", err)
			}
			f.Cut()
			r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
			if r.Err != nil || !r.Reconciled || r.Ack.Seq != 2 {
				t.Fatalf("push over a hostile ack: err %v, reconciled %v", r.Err, r.Reconciled)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestParseAckEscapesRemoteText: an ack crafted to carry terminal escapes
// (in its format, id, publisher or a retired path) is refused, and the
// error that says why holds none of them.
func TestParseAckEscapesRemoteText(t *testing.T) {
	good := Ack{Format: AckFormat, Seq: 3, ID: "20240603_0100", Manifest: strings.Repeat("0f", 32), Time: time.Now().UTC()}
	evil := "\x1b]0;pwned\x07\x1b[2J\u202e"
	for name, mutate := range map[string]func(a *Ack){
		"format":    func(a *Ack) { a.Format = evil },
		"id":        func(a *Ack) { a.ID = evil },
		"publisher": func(a *Ack) { a.Publisher = "host" + evil },
		"manifest":  func(a *Ack) { a.Manifest = evil },
		"retired":   func(a *Ack) { a.Retired = []Retired{{Path: "json/a\u202etxt.json", Since: time.Now()}} },
	} {
		a := good
		mutate(&a)
		_, err := ParseAck(a.Encode())
		if err == nil {
			t.Errorf("%s: an ack carrying terminal escapes was accepted", name)
			continue
		}
		if s := err.Error(); strings.ContainsAny(s, "\x1b\x07\u202e") {
			t.Errorf("%s: error %q carries the difusor's escapes", name, s)
		}
	}
	if _, err := ParseAck(good.Encode()); err != nil {
		t.Fatalf("a good ack: %v", err)
	}
}

// TestListingIsBounded: a difusor without a usable ack whose root lists far
// more files than the cut could explain is refused with a permanent error
// naming it, instead of being held in memory.
func TestListingIsBounded(t *testing.T) {
	defer func(v int) { listSlack = v }(listSlack)
	listSlack = 50
	f := newFixture(t)
	f.Cut()
	mem := targettest.NewMem("m")
	for i := range 200 {
		mem.SetFile(fmt.Sprintf("basura/%04d.html", i), []byte("x"))
	}
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	if r.Err == nil || !targets.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), "difusor m lists more than") {
		t.Fatalf("push to a root of 200 foreign files (bound %d): %v", listMax(4), r.Err)
	}
	if _, ok := mem.File("json/main.json"); ok {
		t.Error("a refused root was written to")
	}
}

// TestMismatchRepairedByTheNextPush: when the repair of a file the rotation
// found fails (the difusor refuses the upload), the push fails saying so,
// the file stays pending in the state database, and the next push (another
// process) checks it first and repairs it, whatever its slice.
func TestMismatchRepairedByTheNextPush(t *testing.T) {
	f := newFixture(t)
	for range 4 {
		f.Cut()
	}
	mem := targettest.NewMem("m")
	db := openDB(t)
	push := func() Result {
		eng := f.engine()
		eng.DB, eng.Rotation = db, VerifyBudget{Files: 1} // one file per push: 001, then 002 (the victim), then 003
		eng.Retry.Attempts = 1
		return eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	}
	if r := push(); r.Err != nil {
		t.Fatal(r.Err)
	}
	victim := "actas/002.jpg"
	data, _ := mem.File(victim)
	good := slices.Clone(data)
	data = slices.Clone(data)
	data[0] ^= 1
	mem.SetFile(victim, data)
	mem.FailWrite = func(p string) error {
		if strings.HasPrefix(p, StagingDir+"/") {
			return targets.Permanent(errors.New("disk quota exceeded"))
		}
		return nil
	}
	if r := push(); r.Err == nil || len(r.Repaired) != 0 {
		t.Fatalf("a repair that could not upload: err %v, repaired %v", r.Err, r.Repaired)
	}
	vs, _ := db.Verify(context.Background(), "m")
	if !slices.Equal(vs.Pending, []string{victim}) || vs.Mismatches != 1 {
		t.Fatalf("after a failed repair: %+v, want %s pending", vs, victim)
	}
	mem.FailWrite = nil
	r := push()
	if r.Err != nil || !slices.Equal(r.Repaired, []string{victim}) {
		t.Fatalf("the next push: err %v, repaired %v, want %s", r.Err, r.Repaired, victim)
	}
	if got, _ := mem.File(victim); string(got) != string(good) {
		t.Fatal("not restored")
	}
	vs, _ = db.Verify(context.Background(), "m")
	if len(vs.Pending) != 0 || vs.Mismatches != 1 || !slices.Equal(vs.Repaired, []string{victim}) {
		t.Errorf("after the repair: %+v (the same mismatch must count once)", vs)
	}
}
