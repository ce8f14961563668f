//go:build unix

package main

import (
	"os"
	"syscall"
)

// cycleSignals ask the daemon for a cycle now (systemd's ExecReload).
var cycleSignals = []os.Signal{syscall.SIGUSR1}
