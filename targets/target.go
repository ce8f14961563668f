// Package targets defines what prepcast needs from a difusor's server: a
// small [Target] contract, the file information it lists, and the one place
// that decides whether an error is worth retrying.
//
// Implementations live in sub-packages (targets/sftp); targets/targettest
// holds an in-memory Target and loopback test servers.
package targets

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"time"
)

// Target is one difusor: a server and a root directory that its web server
// serves. Every path is slash-separated and relative to that root; an
// implementation refuses (with a permanent error) any path that fails
// safepath.CheckInternal, so nothing is ever written outside the root.
//
// Methods are safe for concurrent use: the publisher keeps many files in
// flight on one Target. An implementation connects lazily, rebuilds a lost
// connection on the next call, honours ctx and bounds every operation with a
// deadline. Errors for a missing file wrap fs.ErrNotExist; errors that no
// retry can fix (host key, authentication, missing server features,
// permission) are marked with [Permanent].
type Target interface {
	// Name is the target's configured name.
	Name() string

	// ReadFile returns the whole content of a (small) file.
	ReadFile(ctx context.Context, path string) ([]byte, error)

	// WriteFile creates or truncates path and writes exactly size bytes read
	// from r, then checks that the target holds a file of exactly size bytes,
	// and asks the server to flush it to disk when the server supports that.
	// The parent directory must exist. WriteFile is not atomic: the publisher
	// writes only to staging names and then calls Rename. If r is an
	// io.ReaderAt the implementation may write several parts concurrently.
	WriteFile(ctx context.Context, path string, r io.Reader, size int64) error

	// Rename atomically replaces newpath with oldpath (POSIX rename
	// semantics): a reader of newpath sees the old file or the new one,
	// never a missing or partial one. The parent of newpath must exist.
	Rename(ctx context.Context, oldpath, newpath string) error

	// MkdirAll creates dir and any missing parents; an existing directory
	// is not an error.
	MkdirAll(ctx context.Context, dir string) error

	// Remove deletes one file or empty directory. A missing path is not an
	// error.
	Remove(ctx context.Context, path string) error

	// RemoveAll deletes path and everything below it. A missing path is not
	// an error.
	RemoveAll(ctx context.Context, path string) error

	// Walk calls fn for every regular file below dir ("" or "." for the
	// root), in no particular order. Symbolic links are reported with
	// Mode&fs.ModeSymlink set and never followed.
	Walk(ctx context.Context, dir string, fn func(FileInfo) error) error

	// Close releases the connection. A closed Target may not be used again.
	Close() error
}

// FileInfo describes one file on a target.
type FileInfo struct {
	Path    string // relative to the target's root, slash-separated
	Size    int64
	ModTime time.Time
	Symlink bool // a symbolic link, not a regular file
}

// WalkVisit calls fn for the file at rel described by fi, as Walk reports
// files: regular files and symbolic links (Symlink set, never followed);
// other kinds (directories, devices, sockets) are not reported.
func WalkVisit(rel string, fi fs.FileInfo, fn func(FileInfo) error) error {
	link := fi.Mode()&fs.ModeSymlink != 0
	if !link && !fi.Mode().IsRegular() {
		return nil
	}
	return fn(FileInfo{Path: rel, Size: fi.Size(), ModTime: fi.ModTime(), Symlink: link})
}

// SpaceReporter is implemented by targets that can tell the free space of the
// filesystem that holds their root (statvfs@openssh.com over SFTP).
type SpaceReporter interface {
	// FreeSpace returns the bytes available to the user on the filesystem
	// holding the root. ok is false when the server cannot tell.
	FreeSpace(ctx context.Context) (free int64, ok bool, err error)
}

// DeferredSyncer is implemented by targets that can write files without
// flushing each one to disk and flush many at once afterwards. On a server
// that answers one request at a time (OpenSSH's sftp-server), a flush after
// every file stalls every upload behind it.
type DeferredSyncer interface {
	// WriteFileNoSync is WriteFile without the flush to disk.
	WriteFileNoSync(ctx context.Context, path string, r io.Reader, size int64) error
	// SyncFiles flushes the given files to disk, where the server can.
	SyncFiles(ctx context.Context, paths []string) error
}

// Adapter is implemented by targets that adapt to what their server
// allows (extensions, extra sessions) and may pick a fallback.
type Adapter interface {
	// Adaptation describes the fallbacks picked and why, in one line for
	// the operator; empty when the target works the default way.
	Adaptation() string
	// Learned returns what this target found out about its server that a
	// later process should start from (an opaque token; "" if nothing),
	// and Recall hands such a token back to a new target.
	Learned() string
	Recall(token string)
}

// Commander is implemented by targets that can run a command on the
// difusor's server over their connection: package mode streams a cut's
// package to "prepcast apply" this way. A command may change the files
// below the root: whatever the target remembers about them (directories
// known to exist) is forgotten once the command ends.
type Commander interface {
	// Command starts cmd (a shell command line) on the server. The process
	// ends when its command exits, when ctx is done, or when Close is
	// called.
	Command(ctx context.Context, cmd string) (Process, error)
}

// Process is a command running on a target's server.
type Process interface {
	// Stdin is the command's standard input; closing it sends EOF.
	Stdin() io.WriteCloser
	// Stdout is the command's standard output.
	Stdout() io.Reader
	// Wait waits for the command to exit. A non-zero exit status is an
	// error that carries the status and the end of the command's standard
	// error; a command the server cannot find (status 127) is Permanent.
	Wait() error
	// Close stops the command if it is still running and releases it.
	Close() error
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or any error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// IsRetryable reports whether an operation that returned err may succeed if
// tried again: everything except nil, cancellation and errors marked
// [Permanent]. Connection loss, timeouts, EOF and a server dropping
// handshakes (MaxStartups) are retryable. It never matches error strings.
func IsRetryable(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), IsPermanent(err):
		return false
	}
	return true
}

// ErrClosed is returned by a Target used after Close.
var ErrClosed = errors.New("target closed")

// ErrTooLarge is wrapped by the error for a file that holds more bytes than
// the caller's bound: whatever a difusor serves is read with a bound, so a
// huge file, a file that keeps growing or a link to /dev/zero costs no more
// memory or time than the bound allows.
var ErrTooLarge = errors.New("file is larger than expected")

// BoundedReader is implemented by targets that read a file with a bound on
// its size and hash it as a stream. Every target of this repository
// implements it; [ReadFileMax] and [HashFile] fall back to ReadFile for
// others.
type BoundedReader interface {
	// ReadFileMax returns the content of path if it holds at most max bytes.
	// It never reads more than max+1 bytes: a larger file is a permanent
	// error wrapping ErrTooLarge.
	ReadFileMax(ctx context.Context, path string, max int64) ([]byte, error)
	// HashFile reads path to its end and returns the SHA-256 of its content
	// and its length, holding one buffer in memory. It never reads more than
	// max+1 bytes: a larger file is a permanent error wrapping ErrTooLarge.
	HashFile(ctx context.Context, path string, max int64) (sum [32]byte, size int64, err error)
}

// ReadFileMax returns the content of path on t if it holds at most max
// bytes, with t's own bounded read where it has one.
func ReadFileMax(ctx context.Context, t Target, path string, max int64) ([]byte, error) {
	if br, ok := t.(BoundedReader); ok {
		return br.ReadFileMax(ctx, path, max)
	}
	data, err := t.ReadFile(ctx, path)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("read %s on difusor %s: %w", path, t.Name(), TooLarge(max))
	}
	return data, nil
}

// HashFile returns the SHA-256 and length of path on t, reading at most
// max+1 bytes where t can bound its reads.
func HashFile(ctx context.Context, t Target, path string, max int64) ([32]byte, int64, error) {
	if br, ok := t.(BoundedReader); ok {
		return br.HashFile(ctx, path, max)
	}
	data, err := ReadFileMax(ctx, t, path, max)
	if err != nil {
		return [32]byte{}, 0, err
	}
	return sha256.Sum256(data), int64(len(data)), nil
}

// TooLarge returns the permanent error for a file that holds more than max
// bytes; the caller names the difusor and the file.
func TooLarge(max int64) error {
	if max >= 1<<20 && max%(1<<20) == 0 {
		return Permanent(fmt.Errorf("%w (more than %d MiB)", ErrTooLarge, max>>20))
	}
	return Permanent(fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, max))
}

// HashingReader hashes what is read through it and counts the bytes; it
// returns a permanent error wrapping ErrTooLarge once more than Max bytes
// were read. Target implementations use it for HashFile.
type HashingReader struct {
	R   io.Reader
	Max int64
	h   hash.Hash
	n   int64
}

// Read implements io.Reader.
func (r *HashingReader) Read(p []byte) (int, error) {
	if r.h == nil {
		r.h = sha256.New()
	}
	if room := r.Max + 1 - r.n; int64(len(p)) > room {
		p = p[:max(room, 0)]
	}
	if len(p) == 0 {
		return 0, TooLarge(r.Max)
	}
	n, err := r.R.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if r.n > r.Max {
		return n, TooLarge(r.Max)
	}
	return n, err
}

// Sum returns the SHA-256 and length of what was read.
func (r *HashingReader) Sum() ([32]byte, int64) {
	var s [32]byte
	if r.h == nil {
		r.h = sha256.New()
	}
	copy(s[:], r.h.Sum(nil))
	return s, r.n
}
