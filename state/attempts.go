package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// Results of an [Attempt].
const (
	ResultRunning    = "running"    // begun and not yet ended
	ResultOK         = "ok"         // the target acked the cut
	ResultFailed     = "failed"     // gave up on an error
	ResultCanceled   = "canceled"   // the push was interrupted
	ResultSuperseded = "superseded" // a newer cut appeared; the push retargeted
	ResultAbandoned  = "abandoned"  // its process died; see DB.AbandonDeadAttempts
)

// Attempt is one try at bringing one target to one cut: connect, stage,
// commit, ack. A push makes attempts 1, 2, … per target until one succeeds
// or it gives up.
type Attempt struct {
	ID          int64 // assigned by BeginAttempt; increases, never reused
	Target      string
	Seq         int64  // the cut being pushed
	CutID       string // the cut's time id
	N           int    // attempt number within the push, from 1
	PID         int    // the process that made the attempt
	Start, End  time.Time
	Bytes       int64   // bytes sent
	Files       int     // files sent
	WireSeconds float64 // time spent transferring
	Result      string  // one of the Result constants
	Error       string  // why it failed; empty on success
}

const attemptColumns = `id, target, seq, cut_id, n, pid, start_ns, end_ns, bytes, files, wire_seconds, result, error`

func scanAttempt(s interface{ Scan(...any) error }) (Attempt, error) {
	var a Attempt
	var start, end sql.NullInt64
	if err := s.Scan(&a.ID, &a.Target, &a.Seq, &a.CutID, &a.N, &a.PID, &start, &end,
		&a.Bytes, &a.Files, &a.WireSeconds, &a.Result, &a.Error); err != nil {
		return Attempt{}, err
	}
	a.Start, a.End = fromNanos(start), fromNanos(end)
	return a, nil
}

// BeginAttempt records the start of an attempt as running, made by this
// process, and returns its ID for [DB.EndAttempt]. It uses a's Target, Seq,
// CutID, N and Start (the current time if zero) and ignores its other fields.
func (db *DB) BeginAttempt(ctx context.Context, a Attempt) (int64, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("begin attempt: %w", err)
	}
	switch {
	case a.Target == "":
		return 0, errors.New("begin attempt: no target name")
	case a.Seq < 1:
		return 0, fmt.Errorf("begin attempt for %s: seq %d, want a cut seq of 1 or more", a.Target, a.Seq)
	case a.N < 1:
		return 0, fmt.Errorf("begin attempt for %s: attempt number %d, want 1 or more", a.Target, a.N)
	}
	if a.Start.IsZero() {
		a.Start = time.Now()
	}
	start, err := nanos(a.Start)
	if err != nil {
		return 0, fmt.Errorf("begin attempt for %s: start: %w", a.Target, err)
	}
	res, err := db.exec(ctx,
		`INSERT INTO attempts (target, seq, cut_id, n, pid, start_ns, result) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.Target, a.Seq, a.CutID, a.N, os.Getpid(), start, ResultRunning)
	if err != nil {
		return 0, fmt.Errorf("begin attempt for %s: %w", a.Target, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("begin attempt for %s: %w", a.Target, err)
	}
	return id, nil
}

// EndAttempt records how the running attempt id ended: at end (the current
// time if zero), having sent bytes in files over wire seconds, with result
// ResultOK, ResultFailed, ResultCanceled or ResultSuperseded and errText.
// Ending an attempt that does not exist or has already ended is an error
// and changes nothing.
func (db *DB) EndAttempt(ctx context.Context, id int64, end time.Time, bytes int64, files int, wire float64, result, errText string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("end attempt %d: %w", id, err)
	}
	switch result {
	case ResultOK, ResultFailed, ResultCanceled, ResultSuperseded:
	default:
		return fmt.Errorf("end attempt %d: result %q, want %q, %q, %q or %q",
			id, result, ResultOK, ResultFailed, ResultCanceled, ResultSuperseded)
	}
	if end.IsZero() {
		end = time.Now()
	}
	endNs, err := nanos(end)
	if err != nil {
		return fmt.Errorf("end attempt %d: end: %w", id, err)
	}
	res, err := db.exec(ctx, `
UPDATE attempts SET end_ns = ?, bytes = ?, files = ?, wire_seconds = ?, result = ?, error = ?
WHERE id = ? AND result = 'running'`,
		endNs, bytes, files, wire, result, errText, id)
	if err != nil {
		return fmt.Errorf("end attempt %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("end attempt %d: %w", id, err)
	}
	if n == 1 {
		return nil
	}
	var cur string
	err = db.w.QueryRowContext(ctx, `SELECT result FROM attempts WHERE id = ?`, id).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("end attempt %d: no such attempt", id)
	case err != nil:
		return fmt.Errorf("end attempt %d: %w", id, err)
	}
	return fmt.Errorf("end attempt %d: already ended as %q", id, cur)
}

// AbandonDeadAttempts ends, as ResultAbandoned at end (the current time if
// zero), every running attempt whose process is no longer alive: the
// leftovers of a push that was killed. A push calls it when it starts. It
// returns how many attempts it ended. Attempts of live processes, this one
// included, are left alone (a reused PID keeps a dead attempt running until
// a later call).
func (db *DB) AbandonDeadAttempts(ctx context.Context, end time.Time) (int, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("abandon dead attempts: %w", err)
	}
	if end.IsZero() {
		end = time.Now()
	}
	endNs, err := nanos(end)
	if err != nil {
		return 0, fmt.Errorf("abandon dead attempts: end: %w", err)
	}
	rows, err := db.w.QueryContext(ctx, `SELECT id, pid FROM attempts WHERE result = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("abandon dead attempts: %w", err)
	}
	type running struct {
		id  int64
		pid int
	}
	var dead []running
	for rows.Next() {
		var r running
		if err := rows.Scan(&r.id, &r.pid); err != nil {
			rows.Close()
			return 0, fmt.Errorf("abandon dead attempts: %w", err)
		}
		if r.pid != os.Getpid() && !PIDAlive(r.pid) {
			dead = append(dead, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("abandon dead attempts: %w", err)
	}
	n := 0
	for _, r := range dead {
		res, err := db.exec(ctx,
			`UPDATE attempts SET end_ns = ?, result = ?, error = ? WHERE id = ? AND result = 'running'`,
			endNs, ResultAbandoned, fmt.Sprintf("process %d ended without finishing the attempt", r.pid), r.id)
		if err != nil {
			return n, fmt.Errorf("abandon attempt %d: %w", r.id, err)
		}
		if k, err := res.RowsAffected(); err == nil {
			n += int(k)
		}
	}
	return n, nil
}

// History returns up to limit attempts (all if limit <= 0), most recently
// begun first, for target or for every target if target is "".
func (db *DB) History(ctx context.Context, target string, limit int) ([]Attempt, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var rows *sql.Rows
	var err error
	if target == "" {
		rows, err = db.r.QueryContext(ctx,
			`SELECT `+attemptColumns+` FROM attempts ORDER BY id DESC LIMIT ?`, limit)
	} else {
		rows, err = db.r.QueryContext(ctx,
			`SELECT `+attemptColumns+` FROM attempts WHERE target = ? ORDER BY id DESC LIMIT ?`, target, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		a, err := scanAttempt(rows)
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return out, nil
}

// LastResults returns, by target, the most recently begun attempt that has
// ended (any result but ResultRunning).
func (db *DB) LastResults(ctx context.Context) (map[string]Attempt, error) {
	rows, err := db.r.QueryContext(ctx, `
SELECT `+attemptColumns+` FROM attempts WHERE id IN (
	SELECT max(id) FROM attempts WHERE result <> 'running' GROUP BY target)`)
	if err != nil {
		return nil, fmt.Errorf("read last results: %w", err)
	}
	defer rows.Close()
	m := make(map[string]Attempt)
	for rows.Next() {
		a, err := scanAttempt(rows)
		if err != nil {
			return nil, fmt.Errorf("read last results: %w", err)
		}
		m[a.Target] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read last results: %w", err)
	}
	return m, nil
}

// PruneHistory deletes the ended attempts that ended before before, except
// each target's keep most recently begun ended attempts, and returns how
// many it deleted. Running attempts are never deleted.
func (db *DB) PruneHistory(ctx context.Context, before time.Time, keep int) (int64, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("prune history: %w", err)
	}
	if keep < 0 {
		return 0, fmt.Errorf("prune history: keep %d, want 0 or more", keep)
	}
	b, err := nanos(before)
	if err != nil {
		return 0, fmt.Errorf("prune history: before: %w", err)
	}
	if !b.Valid {
		return 0, nil // nothing ended before the zero time
	}
	res, err := db.exec(ctx, `
DELETE FROM attempts WHERE result <> 'running' AND end_ns < ? AND id NOT IN (
	SELECT id FROM (
		SELECT id, row_number() OVER (PARTITION BY target ORDER BY id DESC) AS rn
		FROM attempts WHERE result <> 'running')
	WHERE rn <= ?)`, b.Int64, keep)
	if err != nil {
		return 0, fmt.Errorf("prune history: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune history: %w", err)
	}
	return n, nil
}

// Totals sums one target's audit history.
type Totals struct {
	Attempts     int
	Failures     int     // attempts that ended "failed"
	Bytes        int64   // payload bytes sent, all attempts
	LastDuration float64 // seconds, the most recent successful attempt
	// Range deltas, all attempts (see RecordAttemptDelta).
	Literal, Copied int64
}

// TotalsByTarget sums the audit history per target.
func (db *DB) TotalsByTarget(ctx context.Context) (map[string]Totals, error) {
	rows, err := db.r.QueryContext(ctx, `
SELECT target, count(*), sum(result = 'failed'), coalesce(sum(bytes), 0),
	coalesce(sum(literal_bytes), 0), coalesce(sum(copied_bytes), 0)
FROM attempts GROUP BY target`)
	if err != nil {
		return nil, fmt.Errorf("read totals: %w", err)
	}
	defer rows.Close()
	out := map[string]Totals{}
	for rows.Next() {
		var name string
		var t Totals
		if err := rows.Scan(&name, &t.Attempts, &t.Failures, &t.Bytes, &t.Literal, &t.Copied); err != nil {
			return nil, fmt.Errorf("read totals: %w", err)
		}
		out[name] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read totals: %w", err)
	}
	hist, err := db.History(ctx, "", 2000)
	if err != nil {
		return nil, err
	}
	for _, a := range hist { // newest first
		t := out[a.Target]
		if t.LastDuration == 0 && a.Result == ResultOK && !a.End.IsZero() {
			t.LastDuration = a.End.Sub(a.Start).Seconds()
			out[a.Target] = t
		}
	}
	return out, nil
}
