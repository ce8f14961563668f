//go:build unix

package sysfs

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Lock takes an exclusive advisory lock (flock) on f, waiting for it when
// wait is true; otherwise it returns ErrLocked at once if another process
// holds it. The kernel releases it when the holder dies or closes f.
func Lock(f *os.File, wait bool) error {
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	err := unix.Flock(int(f.Fd()), how)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}

// OpenNoFollow opens the file at p for reading, refusing a symbolic link
// (O_NOFOLLOW) and never blocking on a FIFO (O_NONBLOCK).
func OpenNoFollow(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// StatAt stats name inside the open directory dir without following a
// link and without a path lookup from the root (fstatat).
func StatAt(dir *os.File, name string) (Stat, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Stat{}, &fs.PathError{Op: "stat", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return Stat{Regular: st.Mode&unix.S_IFMT == unix.S_IFREG, Size: st.Size,
		MTime: unix.TimespecToNsec(st.Mtim), CTime: unix.TimespecToNsec(st.Ctim), Ino: uint64(st.Ino)}, nil
}

// SysStat returns the change time (ns) and inode of fi, zero when unknown.
func SysStat(fi fs.FileInfo) (ctime int64, ino uint64) {
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		return ctimeOf(sys), uint64(sys.Ino)
	}
	return 0, 0
}

// FreeSpace returns the bytes available to unprivileged users on the
// filesystem holding the open file or directory f.
func FreeSpace(f *os.File) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	unit, avail := blockSize(&st), uint64(max(int64(st.Bavail), 0))
	if unit != 0 && avail > math.MaxInt64/unit {
		return math.MaxInt64, nil
	}
	return int64(avail * unit), nil
}

// Device returns the device holding the open file f, to tell filesystems
// apart.
func Device(f *os.File) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	return uint64(st.Dev), nil
}

// SyncFile makes the open file f durable (fsync); f may be open read-only.
func SyncFile(f *os.File) error { return unix.Fsync(int(f.Fd())) }

// NoSpace describes err when it is a full disk or an exhausted quota, and
// returns "" otherwise.
func NoSpace(err error) string {
	switch {
	case errors.Is(err, unix.ENOSPC):
		return "no space left on device"
	case errors.Is(err, unix.EDQUOT):
		return "disk quota exceeded"
	}
	return ""
}

// Permanent are the errors no retry of a local write can fix: a read-only
// filesystem, a link where none may be, names the filesystem cannot hold.
var Permanent = []error{fs.ErrPermission, unix.EROFS, unix.ELOOP, unix.ENAMETOOLONG,
	unix.ENOTDIR, unix.EISDIR, unix.EEXIST, unix.ENOTEMPTY, unix.EXDEV}

// ONoFollow is the open flag that refuses a symbolic link as the last
// element of a path (O_NOFOLLOW); IsLinkRefused tells its error.
const ONoFollow = syscall.O_NOFOLLOW

// IsLinkRefused reports whether err is the refusal of a symbolic link by
// ONoFollow (ELOOP).
func IsLinkRefused(err error) bool { return errors.Is(err, unix.ELOOP) }
