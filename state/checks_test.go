package state

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestChecksKeepLastAndLastPassed checks that the latest check and the
// latest passing one are told apart, per target, and survive a reopen.
func TestChecksKeepLastAndLastPassed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 5, 20, 10, 0, 0, 0, time.UTC)
	for _, r := range []CheckRecord{
		{Target: "a", At: t0, Passed: true, Report: "{}"},
		{Target: "a", At: t0.Add(time.Hour), Passed: false, Fails: 2},
		{Target: "b", At: t0, Passed: false, Fails: 1},
		{Target: "c", At: t0, Passed: false, Fails: 1},
		{Target: "c", At: t0.Add(2 * time.Hour), Passed: true, Warns: 1},
	} {
		if err := db.RecordCheck(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.RecordCheck(ctx, CheckRecord{Target: "a"}); err == nil {
		t.Error("a check without a time was stored")
	}
	db.Close()
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got, err := ro.LastChecks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]CheckSummary{
		"a": {Target: "a", Last: t0.Add(time.Hour), Passed: false, LastPassed: t0},
		"b": {Target: "b", Last: t0, Passed: false},
		"c": {Target: "c", Last: t0.Add(2 * time.Hour), Passed: true, LastPassed: t0.Add(2 * time.Hour)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d targets, want %d: %+v", len(got), len(want), got)
	}
	for k, w := range want {
		g := got[k]
		if g.Target != w.Target || !g.Last.Equal(w.Last) || g.Passed != w.Passed || !g.LastPassed.Equal(w.LastPassed) {
			t.Errorf("%s: got %+v, want %+v", k, g, w)
		}
	}
	if err := ro.RecordCheck(ctx, CheckRecord{Target: "a", At: t0}); err == nil {
		t.Error("a read-only database stored a check")
	}
}
