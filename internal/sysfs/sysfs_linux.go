package sysfs

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// StartWriteback asks the kernel to start writing f's dirty pages now
// without waiting (sync_file_range), so that a later flush finds little left.
// It is a hint: errors are ignored.
func StartWriteback(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

// SyncFilesystem flushes the whole filesystem holding f (syncfs, which
// since Linux 5.8 also reports earlier write-back errors) and returns true.
func SyncFilesystem(f *os.File) (bool, error) { return true, unix.Syncfs(int(f.Fd())) }

func ctimeOf(st *syscall.Stat_t) int64 { return st.Ctim.Nano() }

func blockSize(st *unix.Statfs_t) uint64 {
	if st.Frsize != 0 {
		return uint64(st.Frsize)
	}
	return uint64(st.Bsize)
}
