package watch

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/verify"
)

// Every file of the cut is checked within a day of cycles, and the place in
// the rotation survives a restart (it is kept in the state database).
func TestWindowCoversEveryFileWithinADay(t *testing.T) {
	m := &packager.Manifest{}
	for i := range 5000 {
		m.Entries = append(m.Entries, packager.Entry{Path: fmt.Sprintf("actas/%05d.jpg", i)})
	}
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	cycle := 10 * time.Minute
	seen := map[string]bool{}
	w := &Watcher{DB: db, Cycle: cycle}
	checks := int(24 * time.Hour / cycle)
	for i := range checks {
		if i == checks/2 {
			w = &Watcher{DB: db, Cycle: cycle} // a restart of the daemon
		}
		for _, e := range w.window(ctx, "d1", m) {
			seen[e.Path] = true
		}
	}
	if len(seen) != len(m.Entries) {
		t.Fatalf("%d of %d files checked in a day of %v cycles", len(seen), len(m.Entries), cycle)
	}
}

func TestProblemWords(t *testing.T) {
	for _, tt := range []struct {
		rep  verify.Report
		want string
	}{
		{verify.Report{Problem: verify.ProblemPointer, Mismatches: []verify.Mismatch{{Path: "json/main.json", Kind: verify.Unreadable, Status: 403}}}, "403 on json/main.json"},
		{verify.Report{Seq: 3, Mismatches: []verify.Mismatch{{Path: "a.csv", Kind: verify.Changed}, {Path: "b.jpg", Kind: verify.Missing, Status: 404}}}, "2 files differ: changed a.csv"},
		{verify.Report{Problem: verify.ProblemNoProof, ProblemStatus: 403}, "no signed proof served (403 on .well-known/prepcast/index.json)"},
		{verify.Report{Seq: 3}, ""},
	} {
		if got := Problem(&tt.rep); got != tt.want {
			t.Errorf("Problem = %q, want %q", got, tt.want)
		}
	}
}
