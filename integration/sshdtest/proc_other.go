//go:build !linux

package sshdtest

import (
	"errors"
	"io/fs"
	"syscall"
)

// Servers need /proc and Linux process control; Unavailable reports that on
// other systems, so these are never reached through the exported API.

var errUnsupported = errors.New("sshdtest needs Linux")

func sysProcAttr() *syscall.SysProcAttr   { return nil }
func ownedByRoot(fs.FileInfo) bool        { return false }
func freezeTree(int) ([]int, error)       { return nil, errUnsupported }
func killAll([]int)                       {}
func continueTree(int, []int) error       { return errUnsupported }
func treeCPUSeconds(int) (float64, error) { return 0, errUnsupported }
func ownsListener(int, int) bool          { return false }
