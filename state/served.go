package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Served is one check over HTTP of what a difusor's public site serves:
// the signed cut its pointer belongs to (Seq 0 when none), whether the
// files checked were exactly that cut's, and what went wrong if not.
type Served struct {
	Target     string
	At         time.Time
	Seq        int64
	CutID      string
	Manifest   string // hex SHA-256 of the served cut's manifest; "" if none
	OK         bool   // the site served exactly the signed cut Seq
	Checked    int    // files hashed
	Mismatches int    // files that differ, are missing or not readable
	HTTPErrors int    // answers other than 200, and failed transfers
	Problem    string // e.g. "403 on json/main.json"; "" when OK
}

// AddServed records a check. It fails on a database opened read-only.
func (db *DB) AddServed(ctx context.Context, s Served) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("record served cut: %w", err)
	}
	if s.Target == "" || s.At.IsZero() {
		return errors.New("record served cut: no target or time")
	}
	at, err := nanos(s.At)
	if err != nil {
		return fmt.Errorf("record served cut for %s: %w", s.Target, err)
	}
	if _, err := db.exec(ctx, `
INSERT INTO served (target, at_ns, seq, cut_id, manifest_sha256, ok, checked, mismatches, http_errors, problem)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Target, at, s.Seq, s.CutID, s.Manifest, boolInt(s.OK), s.Checked, s.Mismatches, s.HTTPErrors, s.Problem); err != nil {
		return fmt.Errorf("record served cut for %s: %w", s.Target, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// LatestServed returns each target's most recent check.
func (db *DB) LatestServed(ctx context.Context) (map[string]Served, error) {
	rows, err := db.r.QueryContext(ctx, `
SELECT target, at_ns, seq, cut_id, manifest_sha256, ok, checked, mismatches, http_errors, problem
FROM served WHERE id IN (SELECT max(id) FROM served GROUP BY target)`)
	if err != nil {
		return nil, fmt.Errorf("read served cuts: %w", err)
	}
	out := map[string]Served{}
	list, err := scanServed(rows)
	for _, s := range list {
		out[s.Target] = s
	}
	return out, err
}

// ServedSince returns the checks made at or after since, oldest first.
func (db *DB) ServedSince(ctx context.Context, since time.Time) ([]Served, error) {
	at, err := nanos(since)
	if err != nil {
		return nil, err
	}
	if !at.Valid {
		at = sql.NullInt64{Valid: true}
	}
	rows, err := db.r.QueryContext(ctx, `
SELECT target, at_ns, seq, cut_id, manifest_sha256, ok, checked, mismatches, http_errors, problem
FROM served WHERE at_ns >= ? ORDER BY at_ns, id`, at)
	if err != nil {
		return nil, fmt.Errorf("read served history: %w", err)
	}
	return scanServed(rows)
}

// PruneServed deletes the checks made before before.
func (db *DB) PruneServed(ctx context.Context, before time.Time) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("prune served history: %w", err)
	}
	at, err := nanos(before)
	if err != nil {
		return err
	}
	if _, err := db.exec(ctx, `DELETE FROM served WHERE at_ns < ?`, at); err != nil {
		return fmt.Errorf("prune served history: %w", err)
	}
	return nil
}

func scanServed(rows *sql.Rows) ([]Served, error) {
	defer rows.Close()
	var out []Served
	for rows.Next() {
		var s Served
		var at sql.NullInt64
		var ok int
		if err := rows.Scan(&s.Target, &at, &s.Seq, &s.CutID, &s.Manifest, &ok, &s.Checked, &s.Mismatches, &s.HTTPErrors, &s.Problem); err != nil {
			return out, fmt.Errorf("read served cuts: %w", err)
		}
		s.At, s.OK = fromNanos(at), ok == 1
		out = append(out, s)
	}
	return out, rows.Err()
}
