package state

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestVerifyRecordsRoundTrip checks that a target's verification record
// survives the process (another DB handle reads it), that records of
// targets do not mix, that other meta keys are not taken for records, and
// that the lists kept are bounded.
func TestVerifyRecordsRoundTrip(t *testing.T) {
	db, path := openTemp(t)
	ctx := context.Background()
	at := time.Date(2024, 6, 3, 7, 0, 0, 0, time.UTC)
	var many []string
	for i := range 3 * MaxPendingPaths {
		many = append(many, fmt.Sprintf("actas/%05d.jpg", i))
	}
	if err := db.SetVerify(ctx, Verify{Target: "el-sol", Next: "json/main.json", CheckedAt: at, Checked: 7, Mismatches: 2, Pending: many}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetVerify(ctx, Verify{Target: "buap", Next: "actas/2.jpg", Checked: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMeta(ctx, "verifyX", "not a record"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	v, err := ro.Verify(ctx, "el-sol")
	if err != nil {
		t.Fatal(err)
	}
	if v.Next != "json/main.json" || !v.CheckedAt.Equal(at) || v.Checked != 7 || v.Mismatches != 2 || !slices.Equal(v.Pending, many[:MaxPendingPaths]) {
		t.Errorf("el-sol = %+v", v)
	}
	if v, err := ro.Verify(ctx, "milenio"); err != nil || v.Next != "" || v.Checked != 0 || v.Target != "milenio" {
		t.Errorf("a target never verified: %+v, %v", v, err)
	}
	all, err := ro.Verifies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all["buap"].Next != "actas/2.jpg" || all["el-sol"].Target != "el-sol" {
		t.Errorf("Verifies = %+v", all)
	}
}
