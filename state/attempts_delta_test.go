package state

import (
	"context"
	"testing"
	"time"
)

// TestAttemptDeltaTotals checks that range-delta bytes recorded per attempt
// add up per target, and that an unknown attempt is refused.
func TestAttemptDeltaTotals(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2024, 6, 3, 1, 0, 0, 0, time.UTC)
	for i, d := range [][2]int64{{40, 3600}, {12, 900}, {0, 0}} {
		id, err := db.BeginAttempt(ctx, Attempt{Target: "a", Seq: int64(i + 1), CutID: "x", N: 1, Start: start, Result: ResultRunning})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.EndAttempt(ctx, id, start.Add(time.Second), 100, 1, 1, ResultOK, ""); err != nil {
			t.Fatal(err)
		}
		if d[0] > 0 {
			if err := db.RecordAttemptDelta(ctx, id, d[0], d[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := db.TotalsByTarget(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"].Literal != 52 || got["a"].Copied != 4500 || got["a"].Bytes != 300 {
		t.Fatalf("totals %+v, want literal 52, copied 4500, bytes 300", got["a"])
	}
	if err := db.RecordAttemptDelta(ctx, 9999, 1, 1); err == nil {
		t.Fatal("an unknown attempt was recorded")
	}
}
