package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// States of a target's [Progress].
const (
	StateIdle       = "idle"       // nothing to do, or not started yet
	StateConnecting = "connecting" // dialing, SSH handshake, reading the remote ack
	StateStaging    = "staging"    // uploading files to temporary names
	StateCommitting = "committing" // renaming staged files; pointers last; ack
	StateRetrying   = "retrying"   // waiting until RetryAt after an error
	StateFailing    = "failing"    // gave up for this push
	StateOK         = "ok"         // the target acked the cut
)

// Progress is the live state of one target's push, rewritten by the pushing
// process as it goes. A row outlives its process: a reader should treat a
// row whose PID is not alive ([PIDAlive]) as the last word of a push that
// died, not as a push in progress.
type Progress struct {
	Target                string
	PID                   int // the pushing process; SetProgress records this process if 0
	Seq                   int64
	CutID                 string
	State                 string // one of the State constants
	BytesDone, BytesTotal int64
	FilesDone, FilesTotal int
	Attempt               int       // current attempt number, from 1
	RetryAt               time.Time // when State is StateRetrying: the next attempt
	LastError             string
	RateBps               float64   // recent transfer rate, bytes per second
	Updated               time.Time // when the row was written; SetProgress fills in now if zero
}

const setProgressSQL = `
INSERT INTO progress (target, pid, seq, cut_id, state, bytes_done, bytes_total, files_done, files_total,
	attempt, retry_at, last_error, rate_bps, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (target) DO UPDATE SET
	pid = excluded.pid, seq = excluded.seq, cut_id = excluded.cut_id, state = excluded.state,
	bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total,
	files_done = excluded.files_done, files_total = excluded.files_total,
	attempt = excluded.attempt, retry_at = excluded.retry_at, last_error = excluded.last_error,
	rate_bps = excluded.rate_bps, updated = excluded.updated`

// progressInterval is the least time between two commits of progress rows:
// whatever SetProgress queued meanwhile goes into the next one.
const progressInterval = 50 * time.Millisecond

// progressRetry is how long the progress writer waits after a failed commit.
const progressRetry = 250 * time.Millisecond

// progressOp is a queued write of one target's row; del deletes it.
type progressOp struct {
	p   Progress
	del bool
}

// progressQueue holds the progress rows that SetProgress accepted and the
// background writer has not committed yet: only the latest per target.
type progressQueue struct {
	mu      sync.Mutex
	pending map[string]progressOp
	queued  uint64        // ops accepted so far
	written uint64        // ops committed (all ops up to this count)
	err     error         // last failed commit, reported once, cleared by a success
	closed  bool          // no more ops accepted
	flushed chan struct{} // closed and replaced after each commit attempt

	kick   chan struct{} // work queued; capacity 1
	urgent chan struct{} // FlushProgress waits; capacity 1
	quit   chan struct{} // closed by Close
	done   chan struct{} // closed when the writer has exited
}

func (db *DB) startProgressWriter() {
	db.pq = &progressQueue{
		pending: make(map[string]progressOp),
		flushed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		urgent:  make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go db.progressWriter()
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// queueProgress queues op and returns the error of a commit that failed
// since the last call that returned one.
func (db *DB) queueProgress(target string, op progressOp) error {
	q := db.pq
	if q == nil {
		return ErrReadOnly
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errors.New("state database is closed")
	}
	q.pending[target] = op
	q.queued++
	err := q.err
	q.err = nil
	q.mu.Unlock()
	notify(q.kick)
	return err
}

// SetProgress replaces p.Target's progress row. A zero PID is recorded as
// this process and a zero Updated as now.
//
// SetProgress never waits for the database: it queues the row, and a
// background writer commits the latest row of every target that changed, in
// one transaction at most every 50 ms (see the package documentation on
// durability). So a push never stalls on the state database, whoever holds
// it. A commit that failed is retried; until one succeeds, the failure is
// reported once, by the next SetProgress, DeleteProgress or FlushProgress
// call. [DB.FlushProgress]
// waits until the queued rows are committed; [DB.Close] commits them too.
func (db *DB) SetProgress(ctx context.Context, p Progress) error {
	if p.Target == "" {
		return errors.New("set progress: no target name")
	}
	switch p.State {
	case StateIdle, StateConnecting, StateStaging, StateCommitting, StateRetrying, StateFailing, StateOK:
	default:
		return fmt.Errorf("set progress for %s: unknown state %q", p.Target, p.State)
	}
	if p.PID == 0 {
		p.PID = os.Getpid()
	}
	if p.Updated.IsZero() {
		p.Updated = time.Now()
	}
	if _, err := nanos(p.RetryAt); err != nil {
		return fmt.Errorf("set progress for %s: retry at: %w", p.Target, err)
	}
	if _, err := nanos(p.Updated); err != nil {
		return fmt.Errorf("set progress for %s: updated: %w", p.Target, err)
	}
	if err := db.queueProgress(p.Target, progressOp{p: p}); err != nil {
		return fmt.Errorf("set progress for %s: %w", p.Target, err)
	}
	return nil
}

// DeleteProgress removes target's progress row, for a target that left the
// configuration. Deleting a missing row is not an error. Like SetProgress it
// only queues the change.
func (db *DB) DeleteProgress(ctx context.Context, target string) error {
	if err := db.queueProgress(target, progressOp{del: true}); err != nil {
		return fmt.Errorf("delete progress for %s: %w", target, err)
	}
	return nil
}

// FlushProgress waits until every progress change queued before the call is
// committed, or ctx ends. It returns the error of a failed commit.
func (db *DB) FlushProgress(ctx context.Context) error {
	q := db.pq
	if q == nil {
		return fmt.Errorf("flush progress: %w", ErrReadOnly)
	}
	q.mu.Lock()
	want := q.queued
	q.mu.Unlock()
	notify(q.urgent)
	for {
		q.mu.Lock()
		err, written, flushed := q.err, q.written, q.flushed
		q.err = nil
		q.mu.Unlock()
		switch {
		case err != nil:
			return fmt.Errorf("flush progress: %w", err)
		case written >= want:
			return nil
		}
		select {
		case <-flushed:
		case <-q.done:
			q.mu.Lock()
			written = q.written
			q.mu.Unlock()
			if written >= want {
				return nil
			}
			return errors.New("flush progress: state database is closed")
		case <-ctx.Done():
			return fmt.Errorf("flush progress: %w", ctx.Err())
		}
	}
}

// progressWriter commits queued progress until quit is closed, then commits
// what is left and closes done.
func (db *DB) progressWriter() {
	q := db.pq
	defer close(q.done)
	for {
		select {
		case <-q.kick:
		case <-q.urgent:
		case <-q.quit:
			db.commitProgress()
			return
		}
		for {
			start := time.Now()
			err := db.commitProgress()
			q.mu.Lock()
			more := len(q.pending) > 0
			q.mu.Unlock()
			if !more {
				break
			}
			wait := progressInterval
			if err != nil {
				wait = progressRetry
			}
			t := time.NewTimer(time.Until(start.Add(wait)))
			select {
			case <-t.C:
			case <-q.urgent:
				t.Stop()
			case <-q.quit:
				t.Stop()
				db.commitProgress()
				return
			}
		}
	}
}

// commitProgress commits the queued ops in one transaction. On failure it
// queues them again, unless a newer op for the same target came meanwhile.
func (db *DB) commitProgress() error {
	q := db.pq
	q.mu.Lock()
	batch, upTo := q.pending, q.queued
	q.pending = make(map[string]progressOp, len(batch))
	q.mu.Unlock()

	var err error
	if len(batch) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = db.writeProgress(ctx, batch)
		cancel()
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		for k, op := range batch {
			if _, newer := q.pending[k]; !newer {
				q.pending[k] = op
			}
		}
		q.err = fmt.Errorf("write progress: %w", err)
	} else {
		q.written = upTo
		q.err = nil // the rows of an earlier failure are in by now
	}
	close(q.flushed)
	q.flushed = make(chan struct{})
	return err
}

func (db *DB) writeProgress(ctx context.Context, batch map[string]progressOp) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	tx, err := db.p.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	set := tx.StmtContext(ctx, db.setProgress)
	for target, op := range batch {
		if op.del {
			if _, err := tx.ExecContext(ctx, `DELETE FROM progress WHERE target = ?`, target); err != nil {
				return err
			}
			continue
		}
		p := op.p
		retryAt, _ := nanos(p.RetryAt) // checked by SetProgress
		updated, _ := nanos(p.Updated)
		if _, err := set.ExecContext(ctx, p.Target, p.PID, p.Seq, p.CutID, p.State,
			p.BytesDone, p.BytesTotal, p.FilesDone, p.FilesTotal,
			p.Attempt, retryAt, p.LastError, p.RateBps, updated); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Progress returns every target's progress row, sorted by target name. It
// reports what was last written, whether or not the writer is still alive.
// On a read-write DB it first waits for this DB's queued changes
// ([DB.FlushProgress]), so that it sees them.
func (db *DB) Progress(ctx context.Context) ([]Progress, error) {
	if db.pq != nil {
		if err := db.FlushProgress(ctx); err != nil {
			return nil, fmt.Errorf("read progress: %w", err)
		}
	}
	rows, err := db.r.QueryContext(ctx, `
SELECT target, pid, seq, cut_id, state, bytes_done, bytes_total, files_done, files_total,
	attempt, retry_at, last_error, rate_bps, updated
FROM progress ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	defer rows.Close()
	var out []Progress
	for rows.Next() {
		var p Progress
		var retryAt, updated sql.NullInt64
		if err := rows.Scan(&p.Target, &p.PID, &p.Seq, &p.CutID, &p.State,
			&p.BytesDone, &p.BytesTotal, &p.FilesDone, &p.FilesTotal,
			&p.Attempt, &retryAt, &p.LastError, &p.RateBps, &updated); err != nil {
			return nil, fmt.Errorf("read progress: %w", err)
		}
		p.RetryAt, p.Updated = fromNanos(retryAt), fromNanos(updated)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	return out, nil
}
