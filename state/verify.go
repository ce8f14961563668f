package state

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// verifyKeyPrefix prefixes the meta key of each target's verification
// record ("verify/<target>").
const verifyKeyPrefix = "verify/"

// MaxPendingPaths bounds the paths a verification record keeps.
const MaxPendingPaths = 100

// Verify is the record of the rotating verification of one target: where
// the next check of its served files starts, what the checks found, and
// what is still to be repaired. It survives the process, so the rotation
// goes on across cron runs and daemon restarts.
type Verify struct {
	Target string `json:"-"`
	// Next is the path the next check starts at (the first entry of the
	// cut at or after it, wrapping to the first).
	Next string `json:"next"`
	// CheckedAt is when a check last completed; Checked counts the files
	// read back and hashed over all checks, Rounds the times the rotation
	// went past the end of the cut.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	Checked   int64     `json:"checked"`
	Rounds    int64     `json:"rounds"`
	// Mismatches counts the files found missing or different from the cut
	// the target acknowledges, over all checks.
	Mismatches     int64     `json:"mismatches"`
	LastMismatchAt time.Time `json:"last_mismatch_at,omitzero"`
	// Pending lists files found differing and not yet repaired (at most
	// MaxPendingPaths); the next push checks and repairs them first.
	Pending []string `json:"pending,omitempty"`
	// Repaired lists the files of the last repair, at RepairedAt.
	Repaired   []string  `json:"repaired,omitempty"`
	RepairedAt time.Time `json:"repaired_at,omitzero"`
}

// SetVerify stores v as the verification record of v.Target. When it
// returns nil the record is on stable storage.
func (db *DB) SetVerify(ctx context.Context, v Verify) error {
	if v.Target == "" {
		return fmt.Errorf("set verify: no target name")
	}
	if len(v.Pending) > MaxPendingPaths {
		v.Pending = v.Pending[:MaxPendingPaths]
	}
	if len(v.Repaired) > MaxPendingPaths {
		v.Repaired = v.Repaired[:MaxPendingPaths]
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("set verify for %s: %w", v.Target, err)
	}
	return db.SetMeta(ctx, verifyKeyPrefix+v.Target, string(b))
}

// Verify returns the verification record of target; a target never
// verified has a zero record.
func (db *DB) Verify(ctx context.Context, target string) (Verify, error) {
	s, ok, err := db.Meta(ctx, verifyKeyPrefix+target)
	if err != nil || !ok {
		return Verify{Target: target}, err
	}
	var v Verify
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return Verify{Target: target}, fmt.Errorf("read verify record of %s: %w", target, err)
	}
	v.Target = target
	return v, nil
}

// Verifies returns the verification record of every target that has one.
func (db *DB) Verifies(ctx context.Context) (map[string]Verify, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT key, value FROM meta WHERE key >= ? AND key < ?`, verifyKeyPrefix, verifyKeyPrefix[:len(verifyKeyPrefix)-1]+"0")
	if err != nil {
		return nil, fmt.Errorf("read verify records: %w", err)
	}
	defer rows.Close()
	out := map[string]Verify{}
	for rows.Next() {
		var k, s string
		if err := rows.Scan(&k, &s); err != nil {
			return nil, fmt.Errorf("read verify records: %w", err)
		}
		var v Verify
		if json.Unmarshal([]byte(s), &v) != nil {
			continue // an unreadable record is as good as none
		}
		v.Target = strings.TrimPrefix(k, verifyKeyPrefix)
		out[v.Target] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read verify records: %w", err)
	}
	return out, nil
}
