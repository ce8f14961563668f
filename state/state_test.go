package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func sha(n int) string { return fmt.Sprintf("%064x", n) }

func ack(target string, seq int64) Ack {
	return Ack{
		Target:         target,
		Seq:            seq,
		CutID:          fmt.Sprintf("20240602_%04d", seq),
		ManifestSHA256: sha(int(seq)),
		AckedAt:        time.Date(2024, 6, 2, 20, 0, 0, int(seq), time.UTC),
	}
}

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestAckRoundTrip(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	mx := time.FixedZone("CST", -6*3600)
	want := map[string]Ack{
		"a": {Target: "a", Seq: 3, CutID: "20240602_2010", ManifestSHA256: sha(3),
			AckedAt: time.Date(2024, 6, 2, 20, 11, 12, 123456789, mx)},
		"b": {Target: "b", Seq: 1, CutID: "20240602_2000", ManifestSHA256: sha(1)}, // AckedAt unknown
	}
	for _, a := range want {
		if err := db.SetAck(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	check := func(db *DB) {
		t.Helper()
		got, err := db.Acks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Acks() = %v, want %v", got, want)
		}
		for k, w := range want {
			g := got[k]
			if g.Target != w.Target || g.Seq != w.Seq || g.CutID != w.CutID || g.ManifestSHA256 != w.ManifestSHA256 ||
				!g.AckedAt.Equal(w.AckedAt) || g.AckedAt.IsZero() != w.AckedAt.IsZero() {
				t.Errorf("ack %s = %+v, want %+v", k, g, w)
			}
			if !g.AckedAt.IsZero() && g.AckedAt.Location() != time.UTC {
				t.Errorf("ack %s: AckedAt in %v, want UTC", k, g.AckedAt.Location())
			}
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	check(db2)

	if err := db2.DeleteAck(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := db2.DeleteAck(ctx, "a"); err != nil {
		t.Errorf("DeleteAck of a missing ack: %v", err)
	}
	got, err := db2.Acks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["a"]; ok || len(got) != 1 {
		t.Errorf("after DeleteAck(a): %v", got)
	}
}

func TestSetAckNeverMovesBackwards(t *testing.T) {
	ctx := context.Background()
	other := ack("t", 5)
	other.ManifestSHA256 = sha(99)
	otherID := ack("t", 5)
	otherID.CutID = "20240602_9999"
	later := ack("t", 5)
	later.AckedAt = later.AckedAt.Add(time.Hour)

	tests := []struct {
		name    string
		set     Ack
		wantErr bool
		wantSeq int64
		wantSHA string
	}{
		{"forward", ack("t", 6), false, 6, sha(6)},
		{"far forward", ack("t", 40), false, 40, sha(40)},
		{"same again", ack("t", 5), false, 5, sha(5)},
		{"same, later time", later, false, 5, sha(5)},
		{"backwards", ack("t", 4), true, 5, sha(5)},
		{"same seq, other manifest", other, true, 5, sha(5)},
		{"same seq, other cut id", otherID, true, 5, sha(5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openTemp(t)
			if err := db.SetAck(ctx, ack("t", 5)); err != nil {
				t.Fatal(err)
			}
			err := db.SetAck(ctx, tt.set)
			if tt.wantErr != (err != nil) {
				t.Fatalf("SetAck(%+v) = %v, want error %v", tt.set, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrAckBackwards) {
				t.Errorf("error %v does not wrap ErrAckBackwards", err)
			}
			got, err := db.Acks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if g := got["t"]; g.Seq != tt.wantSeq || g.ManifestSHA256 != tt.wantSHA {
				t.Errorf("stored ack = %+v, want seq %d manifest %.8s", g, tt.wantSeq, tt.wantSHA)
			}
			if !tt.wantErr && !got["t"].AckedAt.Equal(tt.set.AckedAt) {
				t.Errorf("AckedAt = %v, want %v", got["t"].AckedAt, tt.set.AckedAt)
			}

			// ResetAck moves it anywhere.
			if err := db.ResetAck(ctx, ack("t", 2)); err != nil {
				t.Fatal(err)
			}
			got, err = db.Acks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if g := got["t"]; g.Seq != 2 || g.ManifestSHA256 != sha(2) {
				t.Errorf("after ResetAck to 2: %+v", g)
			}
		})
	}
}

func TestAckValidation(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	bad := []struct {
		name string
		mod  func(*Ack)
	}{
		{"no target", func(a *Ack) { a.Target = "" }},
		{"zero seq", func(a *Ack) { a.Seq = 0 }},
		{"no cut id", func(a *Ack) { a.CutID = "" }},
		{"short hash", func(a *Ack) { a.ManifestSHA256 = "abc" }},
		{"upper-case hash", func(a *Ack) { a.ManifestSHA256 = strings.ToUpper(sha(0xabc)) }},
		{"time out of range", func(a *Ack) { a.AckedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			a := ack("t", 1)
			tt.mod(&a)
			if err := db.SetAck(ctx, a); err == nil {
				t.Errorf("SetAck(%+v) succeeded", a)
			}
			if err := db.ResetAck(ctx, a); err == nil {
				t.Errorf("ResetAck(%+v) succeeded", a)
			}
		})
	}
	if got, err := db.Acks(ctx); err != nil || len(got) != 0 {
		t.Errorf("Acks() = %v, %v; want none stored", got, err)
	}
}

func TestAttempts(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	t0 := time.Date(2024, 6, 2, 20, 0, 0, 0, time.UTC)

	begin := func(target string, n int, start time.Time) int64 {
		t.Helper()
		id, err := db.BeginAttempt(ctx, Attempt{Target: target, Seq: 7, CutID: "20240602_2100", N: n, Start: start})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1 := begin("a", 1, t0)
	if err := db.EndAttempt(ctx, a1, t0.Add(time.Second), 100, 2, 0.5, ResultFailed, "connection lost"); err != nil {
		t.Fatal(err)
	}
	a2 := begin("a", 2, t0.Add(2*time.Second))
	if err := db.EndAttempt(ctx, a2, t0.Add(3*time.Second), 1000, 20, 1.25, ResultOK, ""); err != nil {
		t.Fatal(err)
	}
	b1 := begin("b", 1, t0.Add(time.Second))
	b2 := begin("b", 2, t0.Add(4*time.Second)) // still running; b1 too

	if a2 <= a1 || b1 <= a2 || b2 <= b1 {
		t.Errorf("IDs %d %d %d %d do not increase", a1, a2, b1, b2)
	}

	// Ending twice, an unknown ID, or with a non-final result fails.
	if err := db.EndAttempt(ctx, a2, time.Time{}, 0, 0, 0, ResultFailed, "x"); err == nil {
		t.Error("EndAttempt of an ended attempt succeeded")
	}
	if err := db.EndAttempt(ctx, 9999, time.Time{}, 0, 0, 0, ResultFailed, "x"); err == nil {
		t.Error("EndAttempt of an unknown attempt succeeded")
	}
	for _, r := range []string{ResultRunning, ResultAbandoned, "", "OK"} {
		if err := db.EndAttempt(ctx, b1, time.Time{}, 0, 0, 0, r, ""); err == nil {
			t.Errorf("EndAttempt with result %q succeeded", r)
		}
	}
	if _, err := db.BeginAttempt(ctx, Attempt{Target: "a", Seq: 7, N: 0}); err == nil {
		t.Error("BeginAttempt with N 0 succeeded")
	}

	all, err := db.History(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, a := range all {
		ids = append(ids, a.ID)
	}
	if fmt.Sprint(ids) != fmt.Sprint([]int64{b2, b1, a2, a1}) {
		t.Errorf("History(all) IDs = %v, want newest first %v", ids, []int64{b2, b1, a2, a1})
	}
	ha, err := db.History(ctx, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := Attempt{ID: a2, Target: "a", Seq: 7, CutID: "20240602_2100", N: 2, PID: os.Getpid(),
		Start: t0.Add(2 * time.Second), End: t0.Add(3 * time.Second), Bytes: 1000, Files: 20, WireSeconds: 1.25, Result: ResultOK}
	if len(ha) != 1 || ha[0] != want {
		t.Errorf("History(a, 1) = %+v, want [%+v]", ha, want)
	}

	last, err := db.LastResults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 1 || last["a"].ID != a2 {
		t.Errorf("LastResults() = %+v, want only a's attempt %d (b's are running)", last, a2)
	}
	if err := db.EndAttempt(ctx, b1, t0.Add(5*time.Second), 0, 0, 0, ResultSuperseded, ""); err != nil {
		t.Fatal(err)
	}
	last, err = db.LastResults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last["b"].ID != b1 || last["b"].Result != ResultSuperseded {
		t.Errorf("LastResults()[b] = %+v, want attempt %d superseded", last["b"], b1)
	}
}

func TestPruneHistory(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2024, 6, 2, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		before  time.Time
		keep    int
		wantLen map[string]int
	}{
		{"nothing old enough", t0, 0, map[string]int{"a": 6, "b": 2}},
		{"all old, keep 0", t0.Add(time.Hour), 0, map[string]int{"a": 1, "b": 0}}, // a's running one stays
		{"all old, keep 2", t0.Add(time.Hour), 2, map[string]int{"a": 3, "b": 2}},
		{"half old, keep 1", t0.Add(3*time.Minute + time.Second), 1, map[string]int{"a": 3, "b": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openTemp(t)
			// a: 5 ended attempts, ending at t0+1m..t0+5m, and 1 running; b: 2 ended.
			for i := 1; i <= 5; i++ {
				id, err := db.BeginAttempt(ctx, Attempt{Target: "a", Seq: int64(i), CutID: "c", N: 1, Start: t0})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.EndAttempt(ctx, id, t0.Add(time.Duration(i)*time.Minute), 0, 0, 0, ResultOK, ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.BeginAttempt(ctx, Attempt{Target: "a", Seq: 6, CutID: "c", N: 1, Start: t0}); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 2; i++ {
				id, err := db.BeginAttempt(ctx, Attempt{Target: "b", Seq: int64(i), CutID: "c", N: 1, Start: t0})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.EndAttempt(ctx, id, t0.Add(time.Duration(i)*time.Minute), 0, 0, 0, ResultFailed, "x"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.PruneHistory(ctx, tt.before, tt.keep); err != nil {
				t.Fatal(err)
			}
			for target, n := range tt.wantLen {
				h, err := db.History(ctx, target, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(h) != n {
					t.Errorf("%s: %d attempts left, want %d: %+v", target, len(h), n, h)
				}
				if target == "a" && (len(h) == 0 || h[0].Result != ResultRunning) {
					t.Errorf("a's running attempt was pruned: %+v", h)
				}
			}
		})
	}
}

var deadPIDOnce struct {
	sync.Once
	pid int
	err error
}

// deadPID returns the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	o := &deadPIDOnce
	o.Do(func() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		o.err = cmd.Run()
		o.pid = cmd.Process.Pid
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.pid
}

func TestAbandonDeadAttempts(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	dead, err := db.BeginAttempt(ctx, Attempt{Target: "a", Seq: 1, CutID: "c", N: 1})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := db.BeginAttempt(ctx, Attempt{Target: "b", Seq: 1, CutID: "c", N: 1})
	if err != nil {
		t.Fatal(err)
	}
	pid := deadPID(t)
	if _, err := db.w.Exec(`UPDATE attempts SET pid = ? WHERE id = ?`, pid, dead); err != nil {
		t.Fatal(err)
	}
	n, err := db.AbandonDeadAttempts(ctx, time.Time{})
	if err != nil || n != 1 {
		t.Fatalf("AbandonDeadAttempts() = %d, %v; want 1", n, err)
	}
	h, err := db.History(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range h {
		switch a.ID {
		case dead:
			if a.Result != ResultAbandoned || a.End.IsZero() || !strings.Contains(a.Error, fmt.Sprint(pid)) {
				t.Errorf("dead process's attempt = %+v, want abandoned with an end and its PID in the error", a)
			}
		case mine:
			if a.Result != ResultRunning {
				t.Errorf("this process's attempt = %+v, want still running", a)
			}
		}
	}
	if n, err := db.AbandonDeadAttempts(ctx, time.Time{}); err != nil || n != 0 {
		t.Errorf("second AbandonDeadAttempts() = %d, %v; want 0", n, err)
	}
}

func TestProgress(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	t0 := time.Date(2024, 6, 2, 20, 0, 0, 1, time.UTC)
	p := Progress{Target: "b", PID: 4242, Seq: 9, CutID: "20240602_2130", State: StateRetrying,
		BytesDone: 10, BytesTotal: 100, FilesDone: 1, FilesTotal: 10, Attempt: 2,
		RetryAt: t0.Add(time.Second), LastError: "dial: timeout", RateBps: 1.5e6, Updated: t0}
	if err := db.SetProgress(ctx, p); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := db.SetProgress(ctx, Progress{Target: "a", State: StateStaging, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := db.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Target != "a" || got[1] != p {
		t.Fatalf("Progress() = %+v, want a then %+v", got, p)
	}
	if got[0].PID != os.Getpid() || got[0].Updated.Before(before.Add(-time.Millisecond)) {
		t.Errorf("zero PID and Updated recorded as %d, %v; want %d and about now", got[0].PID, got[0].Updated, os.Getpid())
	}

	p.State, p.BytesDone, p.RetryAt = StateOK, 100, time.Time{}
	if err := db.SetProgress(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := db.SetProgress(ctx, Progress{Target: "c", State: "sleeping"}); err == nil {
		t.Error("SetProgress with an unknown state succeeded")
	}
	if err := db.DeleteProgress(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	got, err = db.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != p {
		t.Errorf("Progress() = %+v, want [%+v]", got, p)
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	if _, ok, err := db.Meta(ctx, "k"); err != nil || ok {
		t.Fatalf("Meta(missing) = %v, %v", ok, err)
	}
	for _, v := range []string{"one", "", "three"} {
		if err := db.SetMeta(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := db.Meta(ctx, "k"); err != nil || !ok || got != v {
			t.Errorf("Meta(k) = %q, %v, %v; want %q", got, ok, err, v)
		}
	}
	if err := db.DeleteMeta(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.Meta(ctx, "k"); err != nil || ok {
		t.Errorf("Meta after delete = %v, %v", ok, err)
	}
	if err := db.SetMeta(ctx, "", "v"); err == nil {
		t.Error("SetMeta with an empty key succeeded")
	}
}

func TestTimeRoundTrip(t *testing.T) {
	mx := time.FixedZone("CST", -6*3600)
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 0),
		time.Date(2024, 6, 2, 23, 59, 59, 999999999, mx),
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(), // carries a monotonic reading
	} {
		n, err := nanos(tm)
		if err != nil {
			t.Fatalf("nanos(%v): %v", tm, err)
		}
		got := fromNanos(n)
		if !got.Equal(tm) || got.IsZero() != tm.IsZero() {
			t.Errorf("round trip of %v gave %v", tm, got)
		}
	}
	for _, tm := range []time.Time{
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if _, err := nanos(tm); err == nil {
			t.Errorf("nanos(%v) succeeded, want an out-of-range error", tm)
		}
	}
}

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")

	_, err := OpenReadOnly(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenReadOnly(missing) = %v, want fs.ErrNotExist naming the path", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly created %s", path)
	}

	// An empty file is an SQLite database without a schema.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly(empty file) = %v, want fs.ErrNotExist", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("OpenReadOnly wrote the empty file: %v, %v", fi, err)
	}

	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetAck(ctx, ack("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	acks, err := ro.Acks(ctx)
	if err != nil || acks["a"].Seq != 1 {
		t.Errorf("read-only Acks() = %v, %v", acks, err)
	}
	writes := map[string]error{
		"SetAck":              ro.SetAck(ctx, ack("a", 2)),
		"ResetAck":            ro.ResetAck(ctx, ack("a", 2)),
		"DeleteAck":           ro.DeleteAck(ctx, "a"),
		"EndAttempt":          ro.EndAttempt(ctx, 1, time.Time{}, 0, 0, 0, ResultOK, ""),
		"SetProgress":         ro.SetProgress(ctx, Progress{Target: "a", State: StateIdle}),
		"DeleteProgress":      ro.DeleteProgress(ctx, "a"),
		"SetMeta":             ro.SetMeta(ctx, "k", "v"),
		"DeleteMeta":          ro.DeleteMeta(ctx, "k"),
		"PruneHistory":        func() error { _, err := ro.PruneHistory(ctx, time.Now(), 0); return err }(),
		"BeginAttempt":        func() error { _, err := ro.BeginAttempt(ctx, Attempt{Target: "a", Seq: 1, N: 1}); return err }(),
		"AbandonDeadAttempts": func() error { _, err := ro.AbandonDeadAttempts(ctx, time.Time{}); return err }(),
	}
	for name, err := range writes {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("read-only %s = %v, want ErrReadOnly", name, err)
		}
	}
	// Even a raw write through the read-only pool is refused by SQLite.
	if _, err := ro.r.Exec(`INSERT INTO meta (key, value) VALUES ('x', 'y')`); err == nil {
		t.Error("raw INSERT on a read-only handle succeeded")
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the database file changed while only a read-only handle had it open")
	}
}

func TestCorruptFile(t *testing.T) {
	garbage := bytes.Repeat([]byte("not a database, just garbage\x00\xff"), 200)

	// A valid database with its data pages overwritten: the header is fine,
	// the b-trees are not.
	damaged := func(t *testing.T, path string) {
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			if err := db.SetAck(context.Background(), ack(fmt.Sprintf("target-%03d", i), 1)); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := 4096; i < len(b); i++ {
			b[i] = 0xa5
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, garbage, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"short garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged pages", damaged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			tt.setup(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			db, err := Open(path)
			if err == nil {
				db.Close()
				t.Fatal("Open of a corrupt file succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "delete") {
				t.Errorf("Open error %q: want ErrCorrupt, the path and the advice to delete it", err)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("Open changed the corrupt file")
			}
			if tt.name == "damaged pages" {
				return // the header is intact: a reader sees the problem when it reads the tables
			}
			if _, err := OpenReadOnly(path); !errors.Is(err, ErrCorrupt) {
				t.Errorf("OpenReadOnly error %v: want ErrCorrupt", err)
			}
		})
	}
}

func TestSchemaVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetMeta(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.w.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version = %d, %v; want %d", v, err, schemaVersion)
	}
	db.Close()

	// Reopening keeps the data and the version.
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := db.Meta(ctx, "k"); err != nil || !ok || got != "v" {
		t.Fatalf("Meta after reopen = %q, %v, %v", got, ok, err)
	}

	if _, err := db.w.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for name, open := range map[string]func(string) (*DB, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		db, err := open(path)
		if err == nil {
			db.Close()
			t.Errorf("%s of a newer schema succeeded", name)
			continue
		}
		if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), path) ||
			!strings.Contains(err.Error(), fmt.Sprint(schemaVersion+1)) {
			t.Errorf("%s error %q: want ErrSchemaTooNew naming the path and the version", name, err)
		}
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "state.db")
	_, err := Open(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open in a missing directory = %v, want fs.ErrNotExist naming the path", err)
	}
}

func TestFileURIEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "odd ?#% dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetMeta(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %s: %v", path, err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
}

// TestReadWhileWritingSameProcess reads through a read-only handle while
// writers hammer the same file through a read-write handle.
func TestReadWhileWritingSameProcess(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	if err := db.SetAck(ctx, ack("t", 1)); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() { // acks: durable writes
		defer wg.Done()
		for seq := int64(2); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.SetAck(ctx, ack("t", seq)); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() { // progress: frequent cheap writes
		defer wg.Done()
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.SetProgress(ctx, Progress{Target: "t", State: StateStaging, BytesDone: i, BytesTotal: i}); err != nil {
				errc <- err
				return
			}
		}
	}()

	var lastSeq, lastBytes int64
	for range 100 {
		start := time.Now()
		acks, err := ro.Acks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a := acks["t"]
		if a.Seq < lastSeq || a != ack("t", a.Seq) {
			t.Fatalf("read ack %+v after seq %d: went backwards or is inconsistent", a, lastSeq)
		}
		lastSeq = a.Seq
		ps, err := ro.Progress(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 1 {
			if p := ps[0]; p.BytesDone < lastBytes || p.BytesDone != p.BytesTotal {
				t.Fatalf("read progress %+v after %d bytes: went backwards or is inconsistent", p, lastBytes)
			} else {
				lastBytes = p.BytesDone
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("a read took %v while writers ran", d)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("writer: %v", err)
	}
	if lastSeq < 3 || lastBytes == 0 {
		t.Errorf("reader saw ack seq %d and %d bytes: the writers made no visible progress", lastSeq, lastBytes)
	}
}

func TestPIDAlive(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"self", os.Getpid(), true},
		{"zero", 0, false},
		{"negative", -1, false},
		{"exited", deadPID(t), false},
	}
	for _, tt := range tests {
		if got := PIDAlive(tt.pid); got != tt.want {
			t.Errorf("PIDAlive(%s %d) = %v, want %v", tt.name, tt.pid, got, tt.want)
		}
	}
}

func BenchmarkSetProgress(b *testing.B) {
	ctx := context.Background()
	db, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := Progress{Target: "t", State: StateStaging, BytesTotal: 1 << 30}
	for i := 0; b.Loop(); i++ {
		p.Target = fmt.Sprintf("target-%02d", i%32)
		p.BytesDone = int64(i)
		if err := db.SetProgress(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetAck(b *testing.B) {
	ctx := context.Background()
	db, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := int64(1); b.Loop(); i++ {
		if err := db.SetAck(ctx, ack("t", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSetProgressNeverWaits holds SQLite's write lock from another
// connection, as a second pushing process would, and checks that
// SetProgress still returns at once and the rows land once the lock is free.
func TestSetProgressNeverWaits(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	other, err := openPool(path, false, "_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin() // BEGIN IMMEDIATE: takes the write lock
	if err != nil {
		t.Fatal(err)
	}
	var slowest time.Duration
	for i := range 200 {
		start := time.Now()
		if err := db.SetProgress(ctx, Progress{Target: fmt.Sprintf("t%d", i%20), State: StateStaging, BytesDone: int64(i)}); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		if i%20 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("SetProgress took up to %v while another connection held the write lock", slowest)
	}
	time.Sleep(100 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	ps, err := db.Progress(ctx) // flushes first
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 20 {
		t.Fatalf("Progress() has %d rows, want 20", len(ps))
	}
	for _, p := range ps {
		var i int
		fmt.Sscanf(p.Target, "t%d", &i)
		if p.BytesDone != int64(180+i) {
			t.Errorf("%s: BytesDone %d, want the last value %d", p.Target, p.BytesDone, 180+i)
		}
	}
}

// TestCloseWritesQueuedProgress checks that a row queued just before Close
// is in the database afterwards, and that later calls fail.
func TestCloseWritesQueuedProgress(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Progress{Target: "t", PID: 1, State: StateOK, Seq: 3, Updated: time.Unix(1717372800, 0).UTC()}
	for _, s := range []string{StateConnecting, StateStaging, StateCommitting} {
		if err := db.SetProgress(ctx, Progress{Target: "t", State: s}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetProgress(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := db.SetProgress(ctx, want); err == nil {
		t.Error("SetProgress after Close succeeded")
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ps, err := ro.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0] != want {
		t.Errorf("after Close: Progress() = %+v, want [%+v]", ps, want)
	}
}

func TestTotalsByTarget(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	base := time.Date(2024, 6, 3, 1, 0, 0, 0, time.UTC)
	add := func(target string, bytes int64, result string, took time.Duration) {
		id, err := db.BeginAttempt(ctx, Attempt{Target: target, Seq: 1, CutID: "x", N: 1, Start: base, Result: ResultRunning})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.EndAttempt(ctx, id, base.Add(took), bytes, 1, took.Seconds(), result, ""); err != nil {
			t.Fatal(err)
		}
	}
	add("a", 100, ResultFailed, time.Second)
	add("a", 250, ResultOK, 3*time.Second)
	add("b", 7, ResultOK, 2*time.Second)
	got, err := db.TotalsByTarget(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != (Totals{Attempts: 2, Failures: 1, Bytes: 350, LastDuration: 3}) || got["b"] != (Totals{Attempts: 1, Bytes: 7, LastDuration: 2}) {
		t.Fatalf("totals %+v", got)
	}
}

func TestServedHistory(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	t0 := time.Date(2024, 6, 3, 2, 0, 0, 0, time.UTC)
	for i, s := range []Served{
		{Target: "a", At: t0, Seq: 3, CutID: "x", OK: true, Checked: 10},
		{Target: "b", At: t0, Problem: "403 on json/main.json", HTTPErrors: 1},
		{Target: "a", At: t0.Add(time.Minute), Seq: 4, CutID: "y", Mismatches: 2, Problem: "2 files differ"},
	} {
		if err := db.AddServed(ctx, s); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	latest, err := db.LatestServed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := latest["a"]; a.Seq != 4 || a.OK || a.Mismatches != 2 || !a.At.Equal(t0.Add(time.Minute)) {
		t.Errorf("latest for a: %+v", a)
	}
	if b := latest["b"]; b.Seq != 0 || b.Problem != "403 on json/main.json" || b.HTTPErrors != 1 {
		t.Errorf("latest for b: %+v", b)
	}
	hist, err := db.ServedSince(ctx, t0.Add(time.Second))
	if err != nil || len(hist) != 1 || hist[0].Seq != 4 {
		t.Errorf("since: %v %+v", err, hist)
	}
	if err := db.PruneServed(ctx, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if hist, _ := db.ServedSince(ctx, time.Time{}); len(hist) != 1 {
		t.Errorf("after prune %d rows", len(hist))
	}
}
