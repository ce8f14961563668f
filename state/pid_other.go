//go:build !unix

package state

import "os"

// PIDAlive reports whether a process with the given PID exists. PIDs are
// reused, so true means "probably still that process". PIDAlive(pid) is
// false for pid <= 0.
func PIDAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
