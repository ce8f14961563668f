package state

import (
	"context"
	"fmt"
)

// migrations[i] brings the schema from version i to version i+1. Entries are
// never edited once released: a change is a new entry.
var migrations = []string{
	// 1: acks, attempts, progress, meta.
	`
CREATE TABLE acks (
	target          TEXT PRIMARY KEY,
	seq             INTEGER NOT NULL,
	cut_id          TEXT NOT NULL,
	manifest_sha256 TEXT NOT NULL,
	acked_at        INTEGER             -- unix ns UTC; NULL if unknown
) STRICT;

CREATE TABLE attempts (
	id           INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, even after a prune
	target       TEXT NOT NULL,
	seq          INTEGER NOT NULL,
	cut_id       TEXT NOT NULL,
	n            INTEGER NOT NULL,
	pid          INTEGER NOT NULL,
	start_ns     INTEGER NOT NULL,
	end_ns       INTEGER,                           -- NULL while running
	bytes        INTEGER NOT NULL DEFAULT 0,
	files        INTEGER NOT NULL DEFAULT 0,
	wire_seconds REAL NOT NULL DEFAULT 0,
	result       TEXT NOT NULL,
	error        TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX attempts_by_target ON attempts (target, id);
CREATE INDEX attempts_running ON attempts (result) WHERE result = 'running';

CREATE TABLE progress (
	target      TEXT PRIMARY KEY,
	pid         INTEGER NOT NULL,
	seq         INTEGER NOT NULL,
	cut_id      TEXT NOT NULL,
	state       TEXT NOT NULL,
	bytes_done  INTEGER NOT NULL,
	bytes_total INTEGER NOT NULL,
	files_done  INTEGER NOT NULL,
	files_total INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	retry_at    INTEGER,
	last_error  TEXT NOT NULL,
	rate_bps    REAL NOT NULL,
	updated     INTEGER
) STRICT;

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;
`,
	// 2: checks, the results of "prepcast check" per difusor.
	`
CREATE TABLE checks (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	target  TEXT NOT NULL,
	at_ns   INTEGER NOT NULL,
	passed  INTEGER NOT NULL,           -- 1: no requirement failed
	fails   INTEGER NOT NULL,
	warns   INTEGER NOT NULL,
	report  TEXT NOT NULL DEFAULT ''    -- the check's JSON document for this target
) STRICT;
CREATE INDEX checks_by_target ON checks (target, at_ns);
`,
	// 3: what each difusor's public site served when it was checked over HTTP.
	`
CREATE TABLE served (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	target          TEXT NOT NULL,
	at_ns           INTEGER NOT NULL,
	seq             INTEGER NOT NULL,          -- 0: no signed cut served
	cut_id          TEXT NOT NULL DEFAULT '',
	manifest_sha256 TEXT NOT NULL DEFAULT '',
	ok              INTEGER NOT NULL,          -- 1: exactly that signed cut
	checked         INTEGER NOT NULL DEFAULT 0,
	mismatches      INTEGER NOT NULL DEFAULT 0,
	http_errors     INTEGER NOT NULL DEFAULT 0,
	problem         TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX served_by_target ON served (target, id);
CREATE INDEX served_by_time ON served (at_ns);
`,
	// 4: what range deltas saved per attempt (publisher/deltastage.go).
	`
ALTER TABLE attempts ADD COLUMN literal_bytes INTEGER NOT NULL DEFAULT 0; -- sent for files staged from ranges
ALTER TABLE attempts ADD COLUMN copied_bytes  INTEGER NOT NULL DEFAULT 0; -- copied by the server from served files
`,
}

// schemaVersion is the user_version this code reads and writes.
var schemaVersion = len(migrations)

// migrate checks the file and brings its schema to schemaVersion in one
// transaction, so that a crash leaves the old version or the new one.
func (db *DB) migrate(ctx context.Context) error {
	tx, err := db.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
	if err != nil {
		return openError(db.path, err)
	}
	defer tx.Rollback()

	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return openError(db.path, err)
	}
	if v > schemaVersion {
		return tooNewError(db.path, v)
	}
	// quick_check reads every page; the file is small (history is pruned)
	// and a damaged one is better refused here than misread later.
	var check string
	if err := tx.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&check); err != nil {
		return openError(db.path, err)
	}
	if check != "ok" {
		return corruptError(db.path, fmt.Errorf("quick_check: %s", check))
	}
	if v == schemaVersion {
		return nil
	}
	for i := v; i < schemaVersion; i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate state database %s to version %d: %w", db.path, i+1, err)
		}
	}
	// PRAGMA takes no bound parameters; schemaVersion is a constant.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("migrate state database %s: set version: %w", db.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate state database %s: commit: %w", db.path, err)
	}
	return nil
}
