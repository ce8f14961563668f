package state

import (
	"context"
	"fmt"
)

// RecordAttemptDelta records, for attempt id, the bytes sent for files
// staged from ranges of the files the target served (literal) and the
// bytes its server copied from them (copied). They add to the totals that
// TotalsByTarget reports; an unknown id is an error.
func (db *DB) RecordAttemptDelta(ctx context.Context, id, literal, copied int64) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("record attempt %d: %w", id, err)
	}
	res, err := db.exec(ctx, `UPDATE attempts SET literal_bytes = ?, copied_bytes = ? WHERE id = ?`, literal, copied, id)
	if err != nil {
		return fmt.Errorf("record attempt %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("record attempt %d: no such attempt (%v)", id, err)
	}
	return nil
}
