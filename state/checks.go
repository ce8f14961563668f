package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// CheckRecord is one result of "prepcast check" for one target.
type CheckRecord struct {
	Target string
	At     time.Time
	Passed bool   // no requirement failed
	Fails  int    // requirements that failed
	Warns  int    // requirements with a warning
	Report string // the check's JSON document for this target
}

// CheckSummary is what status and the public list show of a target's
// checks.
type CheckSummary struct {
	Target     string
	Last       time.Time // the latest check
	Passed     bool      // whether the latest check passed
	LastPassed time.Time // the latest check that passed; zero if none
}

// RecordCheck stores a check result. When it returns nil the record is on
// stable storage.
func (db *DB) RecordCheck(ctx context.Context, r CheckRecord) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("record check: %w", err)
	}
	if r.Target == "" {
		return errors.New("record check: no target name")
	}
	at, err := nanos(r.At)
	if err != nil || !at.Valid {
		return fmt.Errorf("record check for %s: time %v: %v", r.Target, r.At, err)
	}
	passed := 0
	if r.Passed {
		passed = 1
	}
	if _, err := db.exec(ctx, `INSERT INTO checks (target, at_ns, passed, fails, warns, report) VALUES (?, ?, ?, ?, ?, ?)`,
		r.Target, at.Int64, passed, r.Fails, r.Warns, r.Report); err != nil {
		return fmt.Errorf("record check for %s: %w", r.Target, err)
	}
	return nil
}

// LastChecks returns, per target that was ever checked, its latest check and
// its latest passing one.
func (db *DB) LastChecks(ctx context.Context) (map[string]CheckSummary, error) {
	rows, err := db.r.QueryContext(ctx, `
SELECT c.target, c.at_ns, c.passed,
	(SELECT MAX(p.at_ns) FROM checks p WHERE p.target = c.target AND p.passed = 1)
FROM checks c
WHERE c.id = (SELECT l.id FROM checks l WHERE l.target = c.target ORDER BY l.at_ns DESC, l.id DESC LIMIT 1)`)
	if err != nil {
		return nil, fmt.Errorf("read checks: %w", err)
	}
	defer rows.Close()
	out := map[string]CheckSummary{}
	for rows.Next() {
		var s CheckSummary
		var at, lastPassed sql.NullInt64
		var passed int
		if err := rows.Scan(&s.Target, &at, &passed, &lastPassed); err != nil {
			return nil, fmt.Errorf("read checks: %w", err)
		}
		s.Last, s.Passed, s.LastPassed = fromNanos(at), passed == 1, fromNanos(lastPassed)
		out[s.Target] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checks: %w", err)
	}
	return out, nil
}
