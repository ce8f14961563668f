// Package localfs is a [targets.Target] backed by a local directory. It is
// what `prepcast apply` uses on a difusor's own server to stage, rename and
// acknowledge a package in the webroot, with the same guarantees as the SFTP
// target: every operation is confined to the root with [os.Root], so neither
// a path nor a symbolic link can reach outside it, and WriteFile (or
// WriteFileNoSync then SyncFiles) makes each file durable.
package localfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/sysfs"
	"github.com/prepcast/prepcast/targets"
)

// MaxReadSize is the largest file ReadFile returns. Targets are read only
// for prepcast's own small files (acks); anything bigger is a mistake.
const MaxReadSize = 64 << 20

// syncEachMax is the most files SyncFiles flushes one by one; above it, one
// syncfs per filesystem is cheaper than an fsync per file.
const syncEachMax = 32

// bufSize is the size of WriteFile's copy buffer.
const bufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

var (
	_ targets.Target         = (*Target)(nil)
	_ targets.DeferredSyncer = (*Target)(nil)
	_ targets.SpaceReporter  = (*Target)(nil)
	_ targets.BoundedReader  = (*Target)(nil)
)

// Target is a local directory seen as a [targets.Target]. It is safe for
// concurrent use.
//
// Like the SFTP target (SFTP has no directory flush), Rename and MkdirAll do
// not fsync the directories they change. Journaling filesystems (ext4, XFS)
// commit such metadata changes in order, and the publisher renames the
// pointer files last and the ack after them, so an ack that survives a crash
// implies the renames before it did; a lost ack makes the next run apply the
// cut again.
type Target struct {
	name   string
	dir    string // the root's absolute name, for messages
	root   *os.Root
	escape error // what os.Root returns for a name that leads outside it
	closed atomic.Bool
}

// New opens root, an existing directory, as a Target named name. Its errors
// are [targets.Permanent]: a configuration that no retry fixes.
func New(name, root string) (*Target, error) {
	if name == "" {
		return nil, targets.Permanent(errors.New("localfs: target name is empty"))
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, targets.Permanent(fmt.Errorf("localfs %s: open root: %w (it must be an existing directory)", name, err))
	}
	// The os package does not export its "path escapes" error; a name
	// starting with ".." yields it without touching the disk.
	_, escape := r.Lstat("..")
	var pe *fs.PathError
	if errors.As(escape, &pe) {
		escape = pe.Err
	}
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return &Target{name: name, dir: root, root: r, escape: escape}, nil
}

// Name returns the target's name.
func (t *Target) Name() string { return t.name }

// Close closes the root. Later calls fail with [targets.ErrClosed];
// operations already running finish. It is safe to call more than once.
func (t *Target) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	return t.root.Close()
}

// begin checks what every operation checks first: the context, that the
// target is open, and each path (with safepath.CheckInternal).
func (t *Target) begin(ctx context.Context, paths ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.closed.Load() {
		return targets.Permanent(targets.ErrClosed)
	}
	for _, p := range paths {
		if err := safepath.CheckInternal(p); err != nil {
			return targets.Permanent(fmt.Errorf("refuse path: %w", err))
		}
	}
	return nil
}

// opErr formats an error as "localfs <name>: <op> <path>: <cause>",
// classifying the cause.
func (t *Target) opErr(op, p string, err error) error {
	return fmt.Errorf("localfs %s: %s %s: %w", t.name, op, p, t.classify(err))
}

// classify marks the errors no retry can fix as permanent: a name leading
// outside the root, permission denied, a read-only filesystem, a full disk
// or quota, and names the filesystem cannot hold as asked. Missing files
// (fs.ErrNotExist), I/O errors and the like stay retryable, as over SFTP.
func (t *Target) classify(err error) error {
	switch {
	case t.escape != nil && errors.Is(err, t.escape):
		return targets.Permanent(fmt.Errorf("refuse path: it leads outside the root through a symbolic link: %w", err))
	case errors.Is(err, fs.ErrClosed) && t.closed.Load():
		return targets.Permanent(targets.ErrClosed)
	case sysfs.NoSpace(err) != "":
		return targets.Permanent(&causeError{sysfs.NoSpace(err) + " under " + t.dir, err})
	}
	for _, e := range sysfs.Permanent {
		if errors.Is(err, e) {
			return targets.Permanent(err)
		}
	}
	return err
}

// causeError explains an error in plain words, keeping it for errors.Is.
type causeError struct {
	msg string
	err error
}

func (e *causeError) Error() string { return e.msg + " (" + e.err.Error() + ")" }
func (e *causeError) Unwrap() error { return e.err }

// ReadFile returns the content of path, following a symbolic link only if it
// stays inside the root. It refuses anything but a regular file of at most
// [MaxReadSize] bytes.
func (t *Target) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return t.ReadFileMax(ctx, p, MaxReadSize)
}

// ReadFileMax is ReadFile with a bound of max bytes: a larger file is a
// permanent error wrapping targets.ErrTooLarge, and no more than max+1
// bytes are read.
func (t *Target) ReadFileMax(ctx context.Context, p string, max int64) ([]byte, error) {
	f, err := t.openRegular(ctx, "read", p, max)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1)) // the file may grow meanwhile
	if err != nil {
		return nil, t.opErr("read", p, err)
	}
	if int64(len(data)) > max {
		return nil, t.opErr("read", p, targets.TooLarge(max))
	}
	return data, nil
}

// HashFile returns the SHA-256 and length of the regular file at path,
// reading at most max+1 bytes.
func (t *Target) HashFile(ctx context.Context, p string, max int64) ([32]byte, int64, error) {
	f, err := t.openRegular(ctx, "hash", p, max)
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer f.Close()
	hr := &targets.HashingReader{R: f, Max: max}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		_, err := hr.Read(*bp)
		if err == io.EOF {
			break
		}
		if err != nil {
			return [32]byte{}, 0, t.opErr("hash", p, err)
		}
	}
	sum, n := hr.Sum()
	return sum, n, nil
}

// openRegular opens the regular file at p, refusing one larger than max.
func (t *Target) openRegular(ctx context.Context, op, p string, max int64) (*os.File, error) {
	if err := t.begin(ctx, p); err != nil {
		return nil, t.opErr(op, p, err)
	}
	f, err := t.root.Open(p)
	if err != nil {
		return nil, t.opErr(op, p, err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case !fi.Mode().IsRegular():
		err = targets.Permanent(fmt.Errorf("not a regular file (%v)", fi.Mode().Type()))
	case fi.Size() > max:
		err = targets.TooLarge(max)
	}
	if err != nil {
		f.Close()
		return nil, t.opErr(op, p, err)
	}
	return f, nil
}

// WriteFile creates or truncates path with mode 0644 (whatever the umask,
// so that the web server can read it) and writes exactly size bytes of r to
// it, never reading r past them. It then checks the file's size, flushes it
// to disk (fsync) and closes it. A source shorter than size is a permanent
// error wrapping io.ErrUnexpectedEOF; the source's own errors are returned
// wrapped. A failed write may leave a partial file: write to a staging name
// and Rename it.
func (t *Target) WriteFile(ctx context.Context, p string, r io.Reader, size int64) error {
	return t.writeFile(ctx, p, r, size, true)
}

// WriteFileNoSync is WriteFile without the flush to disk; see SyncFiles.
func (t *Target) WriteFileNoSync(ctx context.Context, p string, r io.Reader, size int64) error {
	return t.writeFile(ctx, p, r, size, false)
}

func (t *Target) writeFile(ctx context.Context, p string, r io.Reader, size int64, flush bool) error {
	if err := t.begin(ctx, p); err != nil {
		return t.opErr("write", p, err)
	}
	if size < 0 {
		return t.opErr("write", p, targets.Permanent(fmt.Errorf("negative size %d", size)))
	}
	f, err := t.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return t.opErr("write", p, err)
	}
	if err := t.fill(ctx, f, r, size, flush); err != nil {
		_ = f.Close()
		return t.opErr("write", p, err)
	}
	if err := f.Close(); err != nil {
		return t.opErr("write", p, err)
	}
	return nil
}

// fill copies size bytes of r to f, checks f's size and mode, and flushes f
// when asked.
func (t *Target) fill(ctx context.Context, f *os.File, r io.Reader, size int64, flush bool) error {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	buf := *bufp
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
			done += int64(n)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF: // io.ReadFull's own: r ended
			return targets.Permanent(fmt.Errorf("source ended after %d of %d bytes: %w", done, size, io.ErrUnexpectedEOF))
		case err != nil:
			return fmt.Errorf("read source: %w", err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("file holds %d bytes after %d were written", fi.Size(), size)
	}
	if fi.Mode().Perm() != 0o644 {
		if err := f.Chmod(0o644); err != nil {
			return err
		}
	}
	if flush {
		return f.Sync()
	}
	// Start writing it back now, without waiting: the flush that comes
	// before the commit (SyncFiles) then finds little left to write, and
	// the disk works while the next files arrive.
	sysfs.StartWriteback(f)
	return nil
}

// SyncFiles makes the given files durable. Up to 32 files are flushed one
// by one (fsync); for more, it flushes each filesystem holding their
// directories once (syncfs, which also reports earlier write-back errors
// since Linux 5.8), and then does not check that each file exists.
func (t *Target) SyncFiles(ctx context.Context, paths []string) error {
	if err := t.begin(ctx, paths...); err != nil {
		return t.opErr("sync", fmt.Sprintf("%d files", len(paths)), err)
	}
	if len(paths) <= syncEachMax {
		for _, p := range paths {
			if err := t.withFile(ctx, p, sysfs.SyncFile); err != nil {
				return t.opErr("sync", p, err)
			}
		}
		return nil
	}
	dirs := make(map[string]bool)
	devs := make(map[uint64]bool)
	for _, p := range paths {
		d := path.Dir(p)
		if dirs[d] {
			continue
		}
		dirs[d] = true
		err := t.withFile(ctx, d, func(f *os.File) error {
			dev, err := sysfs.Device(f)
			if err != nil {
				return err
			}
			if devs[dev] {
				return nil
			}
			devs[dev] = true
			ok, err := sysfs.SyncFilesystem(f)
			if err == nil && !ok {
				err = errNoSyncfs
			}
			return err
		})
		if errors.Is(err, errNoSyncfs) {
			return t.syncEach(ctx, paths)
		}
		if err != nil {
			return t.opErr("syncfs", d, err)
		}
	}
	return nil
}

// errNoSyncfs: the system cannot flush a whole filesystem.
var errNoSyncfs = errors.New("no syncfs on this system")

// syncEach flushes paths and their directories one by one, where the
// system cannot flush a filesystem at once.
func (t *Target) syncEach(ctx context.Context, paths []string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		if err := t.withFile(ctx, p, sysfs.SyncFile); err != nil {
			return t.opErr("sync", p, err)
		}
		dirs[path.Dir(p)] = true
	}
	for d := range dirs {
		if err := t.withFile(ctx, d, sysfs.SyncFile); err != nil {
			return t.opErr("sync", d, err)
		}
	}
	return nil
}

// withFile opens p (inside the root) read-only and runs fn on it.
func (t *Target) withFile(ctx context.Context, p string, fn func(f *os.File) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := t.root.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(f)
}

// FreeSpace returns the bytes available to unprivileged users on the
// filesystem holding the root (statfs); ok is always true.
func (t *Target) FreeSpace(ctx context.Context) (int64, bool, error) {
	if err := t.begin(ctx); err != nil {
		return 0, false, t.opErr("statfs", ".", err)
	}
	var free int64
	if err := t.withFile(ctx, ".", func(f *os.File) (err error) { free, err = sysfs.FreeSpace(f); return err }); err != nil {
		return 0, false, t.opErr("statfs", ".", err)
	}
	return free, true, nil
}

// Rename atomically replaces newpath with oldpath (rename(2)). A symbolic
// link at either name is renamed or replaced itself, never followed.
func (t *Target) Rename(ctx context.Context, oldpath, newpath string) error {
	desc := oldpath + " to " + newpath
	if err := t.begin(ctx, oldpath, newpath); err != nil {
		return t.opErr("rename", desc, err)
	}
	if err := t.root.Rename(oldpath, newpath); err != nil {
		return t.opErr("rename", desc, err)
	}
	return nil
}

// MkdirAll creates dir and its missing parents with mode 0755 (less the
// umask). "" and "." name the root; a link to a directory inside the root
// counts as a directory.
func (t *Target) MkdirAll(ctx context.Context, dir string) error {
	if dir == "" || dir == "." {
		if err := t.begin(ctx); err != nil {
			return t.opErr("mkdir", ".", err)
		}
		return nil
	}
	if err := t.begin(ctx, dir); err != nil {
		return t.opErr("mkdir", dir, err)
	}
	if err := t.root.MkdirAll(dir, 0o755); err != nil {
		return t.opErr("mkdir", dir, err)
	}
	return nil
}

// Remove deletes one file, symbolic link or empty directory; a missing path
// is not an error.
func (t *Target) Remove(ctx context.Context, p string) error {
	if err := t.begin(ctx, p); err != nil {
		return t.opErr("remove", p, err)
	}
	if err := t.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return t.opErr("remove", p, err)
	}
	return nil
}

// RemoveAll deletes path and everything below it; a symbolic link is
// removed, not what it points to. A missing path is not an error.
func (t *Target) RemoveAll(ctx context.Context, p string) error {
	if err := t.begin(ctx, p); err != nil {
		return t.opErr("remove", p, err)
	}
	if err := t.root.RemoveAll(p); err != nil {
		return t.opErr("remove", p, err)
	}
	return nil
}

// Walk calls fn for every regular file and symbolic link below dir ("" or
// "." for the root), in directory order. It never follows a link: a link
// (even one to a directory) is reported with Symlink set. Entries whose
// names are not valid prepcast paths, and entries removed while the walk
// runs, are skipped. An error from fn stops the walk and is returned as is.
func (t *Target) Walk(ctx context.Context, dir string, fn func(targets.FileInfo) error) error {
	if dir == "" || dir == "." {
		if err := t.begin(ctx); err != nil {
			return t.opErr("walk", ".", err)
		}
		return t.walkDir(ctx, t.root, "", fn)
	}
	if err := t.begin(ctx, dir); err != nil {
		return t.opErr("walk", dir, err)
	}
	fi, err := t.root.Lstat(dir)
	if err != nil {
		return t.opErr("walk", dir, err)
	}
	if !fi.IsDir() {
		return targets.WalkVisit(dir, fi, fn)
	}
	sub, err := t.root.OpenRoot(dir)
	if err != nil {
		return t.opErr("walk", dir, err)
	}
	defer sub.Close()
	return t.walkDir(ctx, sub, dir, fn)
}

// walkDir walks d, the directory rel ("" for the root). Each directory is
// opened as a Root of its own, so that every entry costs one lstat.
func (t *Target) walkDir(ctx context.Context, d *os.Root, rel string, fn func(targets.FileInfo) error) error {
	shown := rel
	if shown == "" {
		shown = "."
	}
	f, err := d.Open(".")
	if err != nil {
		return t.opErr("walk", shown, err)
	}
	entries, err := f.ReadDir(-1)
	_ = f.Close()
	if err != nil {
		return t.opErr("walk", shown, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return t.opErr("walk", shown, err)
		}
		child := path.Join(rel, e.Name())
		if safepath.CheckInternal(child) != nil {
			continue
		}
		if e.IsDir() {
			sub, err := d.OpenRoot(e.Name())
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return t.opErr("walk", child, err)
			}
			err = t.walkDir(ctx, sub, child, fn)
			_ = sub.Close()
			if err != nil {
				return err
			}
			continue
		}
		fi, err := d.Lstat(e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return t.opErr("walk", child, err)
		}
		if err := targets.WalkVisit(child, fi, fn); err != nil {
			return err
		}
	}
	return nil
}
