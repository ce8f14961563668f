package sysfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// Lock takes an exclusive lock (LockFileEx) on f, waiting for it when wait
// is true; otherwise it returns ErrLocked at once if another process holds
// it. Windows releases it when the holder dies or closes f.
func Lock(f *os.File, wait bool) error {
	flags := uint32(windows.LOCKFILE_EXCLUSIVE_LOCK)
	if !wait {
		flags |= windows.LOCKFILE_FAIL_IMMEDIATELY
	}
	err := windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, 1, 0, &windows.Overlapped{})
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return ErrLocked
	}
	return err
}

// OpenNoFollow opens the file at p for reading, refusing a symbolic link or
// junction (reparse point): it checks with Lstat first and then that the
// opened file is the one checked.
func OpenNoFollow(p string) (*os.File, error) {
	before, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if before.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("is a link, not a regular file")}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err != nil || !os.SameFile(before, after) {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("replaced while it was opened")}
	}
	return f, nil
}

// StatAt stats name inside the directory dir without following a link.
func StatAt(dir *os.File, name string) (Stat, error) {
	fi, err := os.Lstat(filepath.Join(dir.Name(), name))
	if err != nil {
		return Stat{}, err
	}
	return Stat{Regular: fi.Mode().IsRegular(), Size: fi.Size(), MTime: fi.ModTime().UnixNano()}, nil
}

// SysStat returns zero: Windows offers no change time or inode through
// os.FileInfo, so the scan relies on size and modification time there.
func SysStat(fs.FileInfo) (ctime int64, ino uint64) { return 0, 0 }

// FreeSpace returns the bytes available to the caller on the volume
// holding f (GetDiskFreeSpaceEx).
func FreeSpace(f *os.File) (int64, error) {
	dir := f.Name()
	if fi, err := f.Stat(); err == nil && !fi.IsDir() {
		dir = filepath.Dir(dir)
	}
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return int64(min(avail, 1<<62)), nil
}

// Device returns 0: every file is flushed on its own on Windows.
func Device(*os.File) (uint64, error) { return 0, nil }

// StartWriteback does nothing on Windows.
func StartWriteback(*os.File) {}

// SyncFilesystem returns false: the caller flushes each file (SyncFile).
func SyncFilesystem(*os.File) (bool, error) { return false, nil }

// SyncFile makes the file f names durable (FlushFileBuffers). Windows
// needs write access to flush, so a file opened read-only is opened again
// for writing; a directory needs no flush.
func SyncFile(f *os.File) error {
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil
	}
	err := f.Sync()
	if err == nil || !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return err
	}
	w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Sync()
}

// NoSpace describes err when it is a full disk or an exhausted quota, and
// returns "" otherwise.
func NoSpace(err error) string {
	switch {
	case errors.Is(err, windows.ERROR_DISK_FULL), errors.Is(err, windows.ERROR_HANDLE_DISK_FULL):
		return "no space left on device"
	case errors.Is(err, windows.ERROR_DISK_QUOTA_EXCEEDED):
		return "disk quota exceeded"
	}
	return ""
}

// Permanent are the errors no retry of a local write can fix.
var Permanent = []error{fs.ErrPermission, windows.ERROR_WRITE_PROTECT, windows.ERROR_FILENAME_EXCED_RANGE,
	windows.ERROR_INVALID_NAME, windows.ERROR_DIRECTORY, windows.ERROR_ALREADY_EXISTS, windows.ERROR_DIR_NOT_EMPTY,
	windows.ERROR_NOT_SAME_DEVICE}

// ONoFollow is 0 on Windows, which has no such open flag: callers check
// with Lstat before they open (os.Root still refuses links that leave the
// root).
const ONoFollow = 0

// IsLinkRefused is always false on Windows (see ONoFollow).
func IsLinkRefused(error) bool { return false }
