//go:build unix && !linux

package sysfs

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// StartWriteback does nothing here: the system has no call to start
// write-back of one file without waiting.
func StartWriteback(*os.File) {}

// SyncFilesystem returns false: the system cannot flush one filesystem and
// report its errors, so the caller flushes each file (SyncFile).
func SyncFilesystem(*os.File) (bool, error) { return false, nil }

func ctimeOf(st *syscall.Stat_t) int64 { return syscall.TimespecToNsec(st.Ctimespec) }

func blockSize(st *unix.Statfs_t) uint64 { return uint64(st.Bsize) }
