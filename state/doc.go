// Package state is prepcast's local state database: one SQLite file under
// state_dir that a push writes and that `prepcast status`, a separate process,
// reads while the push runs.
//
// It holds four things:
//
//   - Acks: a mirror of each target's remote acknowledgement
//     (<root>/.prepcast/ack.json). The remote ack is the truth; this mirror
//     makes status cheap and is rebuilt from the targets when it is lost, so
//     the whole file may be deleted at any time the publisher is stopped.
//   - Attempts: an audit history of every push attempt, kept until
//     [DB.PruneHistory] removes it.
//   - Progress: one live row per target, rewritten a few times per second by
//     the pushing process, stamped with its PID so that a reader can tell a
//     live push from the leftovers of a dead one ([PIDAlive]).
//   - Meta: a small key/value table for whatever else must survive a restart.
//
// # Concurrency
//
// The database runs in WAL mode: readers never block the writer and the
// writer never blocks readers, in this process or in others. [OpenReadOnly]
// opens a handle that never writes the database and works while another
// process holds it open read-write. Writers in several processes (a cron push
// and a manual `push --target`) serialize on SQLite's write lock; each waits
// at most [BusyTimeout] for it. Within one process, writes queue on a mutex
// instead. Every method of [DB] is safe for concurrent use.
//
// [DB.SetProgress] never waits for the database: it queues the row and a
// background goroutine commits the latest row of each target, in one
// transaction at most every 50 ms, so a push never stalls on the state
// database whoever holds its lock. Readers in other processes see progress
// at most that much (plus any lock wait) behind.
//
// The state directory must be on a local file system: WAL mode shares
// memory between processes through the -shm file, which network file
// systems do not support.
//
// # Durability
//
// Acks, attempts and meta are committed with PRAGMA synchronous=FULL: the
// WAL is fsynced before the call returns, so an ack (or an attempt record)
// that a call reported as stored survives kill -9, an OS crash and power
// loss (on storage that honours fsync); a crash in the middle of a call
// leaves the old value or the new one. Progress rows are rewritten constantly and worthless after a crash,
// so they are committed with synchronous=NORMAL, on a connection of their
// own because the setting is per connection: no fsync per commit, still safe
// against kill -9; a power loss can lose the last progress commits but
// neither corrupts the file nor loses an ack, since each FULL commit fsyncs
// the WAL up to and including itself. A newly created file's directory entry
// is fsynced by [Open].
//
// # Files
//
// Next to the database SQLite keeps "-wal" and "-shm" files. They are part of
// the database while any process has it open: copy or delete all three
// together, or none. They are kept (the WAL truncated to zero bytes) after
// the last writer closes, so that a reader that cannot create files in the
// state directory can still open the database; see [OpenReadOnly].
//
// SQLite's locks on the database file are POSIX record locks, which the
// kernel drops when the process closes any descriptor of that file: nothing
// else in a process that has the database open may open and close the
// database file itself (reading it for a backup, say).
//
// # Versions
//
// The schema version is PRAGMA user_version. [Open] migrates an older file
// forward in one transaction; a file written by a newer prepcast is refused
// with [ErrSchemaTooNew] rather than misread.
package state
