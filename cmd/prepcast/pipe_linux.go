package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe enlarges the kernel buffer of f if it is a pipe, so that the
// sender can run further ahead; failures are harmless and ignored.
func growPipe(f *os.File) {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
}
