// Package sysfs holds the few filesystem calls prepcast needs that differ
// between the operating systems a difusor may run (Linux, FreeBSD and other
// Unix systems, Windows): durable writes, free space, advisory locks, and
// opening and stating files without following links. Each function says
// what it guarantees on each system; where a system lacks a call, the
// fallback is the safe one (flush each file rather than the filesystem).
package sysfs

import "errors"

// ErrLocked is returned by [Lock] without waiting when another process
// holds the lock.
var ErrLocked = errors.New("locked by another process")

// Stat is what the results-tree scan compares between cuts.
type Stat struct {
	Regular bool  // a regular file (not a link, directory, device, FIFO)
	Size    int64 // bytes
	MTime   int64 // ns since the epoch
	CTime   int64 // ns since the epoch; 0 where the system has no change time
	Ino     uint64
}
