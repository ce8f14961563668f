package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrAckBackwards is returned (wrapped) by [DB.SetAck] when the target's
// stored ack is for a later cut, or for another cut with the same seq. Such
// an ack can only be stored with [DB.ResetAck], after the remote ack was
// read and found to say so.
var ErrAckBackwards = errors.New("ack would move backwards")

// Ack mirrors one target's remote acknowledgement: the target fully holds
// the cut Seq/CutID whose manifest has the SHA-256 ManifestSHA256.
type Ack struct {
	Target         string
	Seq            int64
	CutID          string
	ManifestSHA256 string    // lower-case hex, 64 digits
	AckedAt        time.Time // when the target acked; zero if unknown
}

func (a Ack) validate() error {
	switch {
	case a.Target == "":
		return errors.New("ack has no target name")
	case a.Seq < 1:
		return fmt.Errorf("ack for %s: seq %d, want a cut seq of 1 or more", a.Target, a.Seq)
	case a.CutID == "":
		return fmt.Errorf("ack for %s: no cut id", a.Target)
	case !isSHA256Hex(a.ManifestSHA256):
		return fmt.Errorf("ack for %s: manifest hash %q is not 64 lower-case hex digits", a.Target, a.ManifestSHA256)
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// SetAck records that a.Target acked a cut, after the remote ack was
// written. It inserts the target's ack or moves it forward to a later seq;
// repeating the stored ack is a no-op that only updates AckedAt. It refuses,
// with an error wrapping [ErrAckBackwards] and storing nothing, an ack with
// a lower seq than the stored one, or with the same seq and another cut id
// or manifest. When SetAck returns nil the ack is on stable storage.
func (db *DB) SetAck(ctx context.Context, a Ack) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("set ack: %w", err)
	}
	if err := a.validate(); err != nil {
		return fmt.Errorf("set ack: %w", err)
	}
	at, err := nanos(a.AckedAt)
	if err != nil {
		return fmt.Errorf("set ack for %s: acked at: %w", a.Target, err)
	}
	// One statement, so the check and the write are atomic against other
	// writers, in this process or another.
	res, err := db.exec(ctx, `
INSERT INTO acks (target, seq, cut_id, manifest_sha256, acked_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (target) DO UPDATE SET
	seq = excluded.seq, cut_id = excluded.cut_id,
	manifest_sha256 = excluded.manifest_sha256, acked_at = excluded.acked_at
WHERE excluded.seq > acks.seq
	OR (excluded.seq = acks.seq AND excluded.cut_id = acks.cut_id
		AND excluded.manifest_sha256 = acks.manifest_sha256)`,
		a.Target, a.Seq, a.CutID, a.ManifestSHA256, at)
	if err != nil {
		return fmt.Errorf("set ack for %s: %w", a.Target, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("set ack for %s: %w", a.Target, err)
	}
	if n == 1 {
		return nil
	}
	cur, ok, err := db.ack(ctx, a.Target)
	switch {
	case err != nil:
		return fmt.Errorf("set ack for %s: %w", a.Target, err)
	case !ok: // deleted between the two statements
		return fmt.Errorf("set ack for %s to cut %d (%s): %w; it changed concurrently, retry", a.Target, a.Seq, a.CutID, ErrAckBackwards)
	}
	return fmt.Errorf("set ack for %s to cut %d (%s): stored ack is cut %d (%s, manifest %.12s): %w; "+
		"read the target's ack and use ResetAck if the target says otherwise",
		a.Target, a.Seq, a.CutID, cur.Seq, cur.CutID, cur.ManifestSHA256, ErrAckBackwards)
}

// ResetAck stores a as the target's ack whatever was stored before. It is
// for when the target's own ack (the truth) says something else, for example
// after the target was restored from a backup. When ResetAck returns nil the
// ack is on stable storage.
func (db *DB) ResetAck(ctx context.Context, a Ack) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("reset ack: %w", err)
	}
	if err := a.validate(); err != nil {
		return fmt.Errorf("reset ack: %w", err)
	}
	at, err := nanos(a.AckedAt)
	if err != nil {
		return fmt.Errorf("reset ack for %s: acked at: %w", a.Target, err)
	}
	_, err = db.exec(ctx, `
INSERT INTO acks (target, seq, cut_id, manifest_sha256, acked_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (target) DO UPDATE SET
	seq = excluded.seq, cut_id = excluded.cut_id,
	manifest_sha256 = excluded.manifest_sha256, acked_at = excluded.acked_at`,
		a.Target, a.Seq, a.CutID, a.ManifestSHA256, at)
	if err != nil {
		return fmt.Errorf("reset ack for %s: %w", a.Target, err)
	}
	return nil
}

// DeleteAck forgets the target's ack, for a target whose remote ack is
// missing or that left the configuration. Deleting a missing ack is not an
// error.
func (db *DB) DeleteAck(ctx context.Context, target string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("delete ack: %w", err)
	}
	if _, err := db.exec(ctx, `DELETE FROM acks WHERE target = ?`, target); err != nil {
		return fmt.Errorf("delete ack for %s: %w", target, err)
	}
	return nil
}

// Acks returns every stored ack, by target name.
func (db *DB) Acks(ctx context.Context) (map[string]Ack, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT target, seq, cut_id, manifest_sha256, acked_at FROM acks`)
	if err != nil {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	defer rows.Close()
	m := make(map[string]Ack)
	for rows.Next() {
		a, err := scanAck(rows)
		if err != nil {
			return nil, fmt.Errorf("read acks: %w", err)
		}
		m[a.Target] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	return m, nil
}

// ack returns one target's ack from the durable-write connection, so that it
// sees that connection's latest commit.
func (db *DB) ack(ctx context.Context, target string) (Ack, bool, error) {
	a, err := scanAck(db.w.QueryRowContext(ctx,
		`SELECT target, seq, cut_id, manifest_sha256, acked_at FROM acks WHERE target = ?`, target))
	if errors.Is(err, sql.ErrNoRows) {
		return Ack{}, false, nil
	}
	if err != nil {
		return Ack{}, false, err
	}
	return a, true, nil
}

func scanAck(s interface{ Scan(...any) error }) (Ack, error) {
	var a Ack
	var at sql.NullInt64
	if err := s.Scan(&a.Target, &a.Seq, &a.CutID, &a.ManifestSHA256, &at); err != nil {
		return Ack{}, err
	}
	a.AckedAt = fromNanos(at)
	return a, nil
}
