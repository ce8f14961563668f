//go:build unix

package state

import (
	"errors"
	"syscall"
)

// PIDAlive reports whether a process with the given PID exists, by sending
// it signal 0. A process owned by another user counts as alive. PIDs are
// reused, so true means "probably still that process"; a zombie (exited, not
// yet reaped by its parent) also counts as alive. PIDAlive(pid) is false for
// pid <= 0.
func PIDAlive(pid int) bool {
	if pid <= 0 {
		return false // kill(0) and kill(-n) address process groups
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
