// Command maxrss runs a command with its own standard streams and writes
// the command's peak resident memory in bytes (getrusage's ru_maxrss) to
// the file named by its first argument. A test measures a child this way
// because Linux carries the parent's peak into a child started from a
// large process: this small one adds a few MB at most.
//
// Usage: maxrss OUTFILE COMMAND [ARG]...
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: maxrss OUTFILE COMMAND [ARG]...")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		os.Exit(2)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if werr := os.WriteFile(os.Args[1], []byte(fmt.Sprint(ru.Maxrss*1024)), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "maxrss:", werr)
		os.Exit(2)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
