package state

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// BusyTimeout is how long an operation waits for a lock held by another
// process before it fails with SQLITE_BUSY. Writers wait for each other;
// readers wait only in rare moments (another connection recovering the WAL
// index after a crash).
const BusyTimeout = 5 * time.Second

var busyTimeoutParam = fmt.Sprintf("_pragma=busy_timeout(%d)", BusyTimeout.Milliseconds())

// walSizeLimit caps the size the WAL file keeps after a checkpoint resets
// it; the WAL grows past it only while a reader pins old pages.
const walSizeLimit = 4 << 20

var (
	// ErrCorrupt marks a state database file that SQLite cannot read as a
	// database (garbage, truncated, damaged). The file only mirrors what the
	// targets hold, so the remedy is to delete it and its -wal and -shm
	// files; the error message says so.
	ErrCorrupt = errors.New("state database is corrupt")

	// ErrSchemaTooNew marks a state database written by a newer prepcast,
	// whose schema this one does not know.
	ErrSchemaTooNew = errors.New("state database schema is newer than this prepcast")

	// ErrSchemaTooOld marks a state database that [OpenReadOnly] cannot read
	// because it has not been migrated yet; the next [Open] migrates it.
	ErrSchemaTooOld = errors.New("state database schema is older than this prepcast")

	// ErrReadOnly is returned by every write method of a [DB] opened with
	// [OpenReadOnly].
	ErrReadOnly = errors.New("state database is open read-only")
)

// DB is an open state database. Its methods are safe for concurrent use. A
// DB from [Open] reads and writes; one from [OpenReadOnly] only reads, and
// its write methods return [ErrReadOnly].
type DB struct {
	path string

	// w commits acks, attempts and meta with synchronous=FULL; p commits
	// progress with synchronous=NORMAL; each holds one connection. r serves
	// reads. w and p are nil when the DB is read-only.
	w, p, r *sql.DB

	// wmu serializes this process's commits on w and p, so that they queue
	// in Go (fairly) instead of polling SQLite's write lock.
	wmu sync.Mutex

	setProgress *sql.Stmt      // prepared on p
	pq          *progressQueue // nil when the DB is read-only

	closeOnce sync.Once
	closeErr  error
}

// Open opens the state database at path for reading and writing, creating
// the file and its schema if it does not exist and migrating an older schema
// forward. The directory must exist. A file that is not a readable SQLite
// database gives an error wrapping [ErrCorrupt] that names the path and says
// that it may be deleted; a file from a newer prepcast gives
// [ErrSchemaTooNew].
func Open(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open state database %s: directory: %w", abs, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open state database %s: %s is not a directory", abs, dir)
	}
	created := false
	if fi, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		created = true
	} else if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", abs, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open state database %s: not a regular file", abs)
	}

	writer := func(synchronous string) []string {
		return []string{
			busyTimeoutParam,
			"_pragma=journal_mode(WAL)",
			"_pragma=journal_size_limit(" + fmt.Sprint(walSizeLimit) + ")",
			"_pragma=synchronous(" + synchronous + ")",
			"_txlock=immediate", // a write transaction takes the lock at BEGIN
		}
	}
	db := &DB{path: abs}
	if db.w, err = openPool(abs, true, writer("FULL")...); err != nil {
		return nil, openError(abs, err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	// Migrate before opening the other pools: the first connection decides
	// whether the file is a database at all.
	if err := db.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	if created {
		// Make the new file's directory entry durable along with the first
		// ack; SQLite syncs the directory only for the WAL.
		if err := syncDir(dir); err != nil {
			db.Close()
			return nil, fmt.Errorf("open state database %s: %w", abs, err)
		}
	}
	if db.p, err = openPool(abs, true, writer("NORMAL")...); err != nil {
		db.Close()
		return nil, openError(abs, err)
	}
	db.p.SetMaxOpenConns(1)
	db.p.SetMaxIdleConns(1)
	if db.r, err = openPool(abs, true,
		busyTimeoutParam,
		"_pragma=query_only(1)",
	); err != nil {
		db.Close()
		return nil, openError(abs, err)
	}
	db.r.SetMaxIdleConns(4)
	if db.setProgress, err = db.p.Prepare(setProgressSQL); err != nil {
		db.Close()
		return nil, openError(abs, err)
	}
	db.startProgressWriter()
	return db, nil
}

// OpenReadOnly opens an existing state database for reading only; it is what
// `prepcast status` uses while a push may be writing the same file from
// another process, which it never blocks. It never creates the database and
// never writes it. A missing file, or one that holds no schema yet, gives an
// error wrapping fs.ErrNotExist; a damaged one [ErrCorrupt]; one of another
// schema version [ErrSchemaTooNew] or [ErrSchemaTooOld].
//
// SQLite needs the database's -wal and -shm files even to read. A writer
// creates them and keeps them after it closes, so they need only be
// readable. If they are missing (deleted, or the file was copied alone),
// OpenReadOnly creates them empty, with the owner of the database file when
// run as root; where the directory is not writable it fails with an error
// saying so.
func OpenReadOnly(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open state database %s: %w (the first push creates it)", abs, fs.ErrNotExist)
	} else if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", abs, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open state database %s: not a regular file", abs)
	}
	db := &DB{path: abs}
	db.r, err = openPool(abs, false,
		"mode=ro",
		busyTimeoutParam,
		"_pragma=query_only(1)",
	)
	if err != nil {
		return nil, readOnlyOpenError(abs, err)
	}
	db.r.SetMaxIdleConns(4)
	var v int
	if err := db.r.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		db.Close()
		return nil, readOnlyOpenError(abs, err)
	}
	switch {
	case v == 0:
		db.Close()
		return nil, fmt.Errorf("open state database %s: %w: it holds no prepcast state yet (the first push creates it)", abs, fs.ErrNotExist)
	case v > schemaVersion:
		db.Close()
		return nil, tooNewError(abs, v)
	case v < schemaVersion:
		db.Close()
		return nil, fmt.Errorf("open state database %s: schema version %d, this prepcast reads version %d; the next push upgrades it: %w",
			abs, v, schemaVersion, ErrSchemaTooOld)
	}
	return db, nil
}

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// Close commits the queued progress changes and closes the database. Later
// calls return the first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { db.closeErr = db.close() })
	return db.closeErr
}

func (db *DB) close() error {
	var errs []error
	if q := db.pq; q != nil {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.quit)
		<-q.done
		q.mu.Lock()
		if n := len(q.pending); n > 0 {
			errs = append(errs, fmt.Errorf("%d progress rows not written: %v", n, q.err))
		}
		q.mu.Unlock()
	}
	if db.setProgress != nil {
		errs = append(errs, db.setProgress.Close())
	}
	// w last: the last connection to close checkpoints the WAL.
	for _, p := range []*sql.DB{db.r, db.p, db.w} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close state database %s: %w", db.path, err)
	}
	return nil
}

// writable returns ErrReadOnly for a read-only DB.
func (db *DB) writable() error {
	if db.w == nil {
		return ErrReadOnly
	}
	return nil
}

// exec runs a durable write statement.
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	return db.w.ExecContext(ctx, query, args...)
}

// openPool opens a connection pool on path with the given URI query
// parameters and checks that a connection can be made. keepWAL makes every
// connection keep the -wal and -shm files when it closes last.
func openPool(path string, keepWAL bool, params ...string) (*sql.DB, error) {
	c, err := sqlite.NewConnector(fileURI(path) + "?" + strings.Join(params, "&"))
	if err != nil {
		return nil, err
	}
	if keepWAL {
		c = persistWAL{c}
	}
	p := sql.OpenDB(c)
	if err := p.Ping(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// fileURI returns an SQLite URI for the absolute path abs, escaping the
// characters that URI syntax would otherwise interpret.
func fileURI(abs string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(filepath.ToSlash(abs))
}

// persistWAL sets SQLITE_FCNTL_PERSIST_WAL on each new connection, so that
// the last writer to close leaves the (truncated) -wal and the -shm files
// behind and a reader that cannot create them can still open the database.
type persistWAL struct{ driver.Connector }

// Connect opens a connection and sets SQLITE_FCNTL_PERSIST_WAL on it.
func (c persistWAL) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	fc, ok := conn.(sqlite.FileControl)
	if !ok {
		conn.Close()
		return nil, errors.New("sqlite connection has no file control")
	}
	if _, err := fc.FileControlPersistWAL("main", 1); err != nil {
		conn.Close()
		return nil, fmt.Errorf("keep WAL file: %w", err)
	}
	return conn, nil
}

// openError wraps an error met while opening or first reading path, adding
// the remedy when SQLite says the file is not a usable database.
func openError(path string, err error) error {
	if isCorrupt(err) {
		return corruptError(path, err)
	}
	return fmt.Errorf("open state database %s: %w", path, err)
}

// readOnlyOpenError is openError for OpenReadOnly, which also explains
// SQLite's failure to create the -wal and -shm files.
func readOnlyOpenError(path string, err error) error {
	if sqliteCode(err)&0xff == sqlite3.SQLITE_READONLY {
		return fmt.Errorf("open state database %s: %w; its -wal and -shm files are missing and this user cannot create them: "+
			"read it as the user that pushes, or after a push has created them", path, err)
	}
	return openError(path, err)
}

func corruptError(path string, cause error) error {
	return fmt.Errorf("open state database %s: %w (%v); it only mirrors the targets' acks and keeps the push history: "+
		"delete it (with its -wal and -shm files) and the acks are rebuilt from the targets by `prepcast status --probe` or the next push",
		path, ErrCorrupt, cause)
}

func tooNewError(path string, v int) error {
	return fmt.Errorf("open state database %s: schema version %d, this prepcast knows versions up to %d: "+
		"use the prepcast that wrote it, or delete the file to rebuild it from the targets' acks: %w",
		path, v, schemaVersion, ErrSchemaTooNew)
}

// sqliteCode returns the extended SQLite result code in err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// isCorrupt reports whether err is SQLite saying that the file is not a
// database or is damaged.
func isCorrupt(err error) bool {
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
		return true
	}
	return false
}

// syncDir fsyncs a directory so that entries created in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
