package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// wrapArg, as the first argument, makes pushbench run the rest of its
// arguments as a command and report that command's resource usage (see
// wrapMain).
//
// A child's peak RSS as wait4 reports it is at least the parent's own peak
// at the moment of the fork: the kernel records the old address space's
// high-water mark when the child execs, and Go's fork shares the parent's
// address space until then. The benchmark itself holds far more memory than
// the tools it measures, so each measured command is started by a fresh,
// small pushbench process whose own peak is the only floor (a few MB).
const wrapArg = "-rusage-wrapper"

// usage is what the wrapper reports of the command it ran.
type usage struct {
	cpu   float64 // user + system seconds of the command and all it waited for
	rssKB int64   // peak resident set of the largest process in the command's tree
}

// wrapMain runs args as a command with the wrapper's standard streams,
// writes "utime_usec stime_usec maxrss_kb" to file descriptor 3 and exits
// with the command's exit status.
func wrapMain(args []string) {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "pushbench: "+wrapArg+": no command")
		os.Exit(2)
	}
	c := exec.Command(args[0], args[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := c.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintf(os.Stderr, "pushbench: run %s: %v\n", args[0], err)
		os.Exit(2)
	}
	ru := c.ProcessState.SysUsage().(*syscall.Rusage)
	report := os.NewFile(3, "rusage")
	fmt.Fprintf(report, "%d %d %d\n", usec(ru.Utime), usec(ru.Stime), ru.Maxrss)
	report.Close()
	os.Exit(c.ProcessState.ExitCode())
}

func usec(t syscall.Timeval) int64 { return t.Sec*1_000_000 + t.Usec }

// wrapped is a command run through the wrapper.
type wrapped struct {
	cmd    *exec.Cmd
	output bytes.Buffer
	report *os.File // read end of the wrapper's descriptor 3
	write  *os.File // write end, the parent's copy closed once started
}

// wrap returns c to be run through the wrapper; c itself is never started.
func wrap(c *exec.Cmd) (*wrapped, error) {
	if c.Err != nil {
		return nil, c.Err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find pushbench executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	w2 := &wrapped{report: r, write: w}
	w2.cmd = exec.Command(self, append([]string{wrapArg, c.Path}, c.Args[1:]...)...)
	w2.cmd.Env, w2.cmd.Dir = c.Env, c.Dir
	w2.cmd.Stdout, w2.cmd.Stderr = &w2.output, &w2.output
	w2.cmd.ExtraFiles = []*os.File{w}
	return w2, nil
}

// run runs the wrapped command and returns the command's usage.
func (w *wrapped) run() (usage, error) {
	defer w.report.Close()
	err := w.cmd.Start()
	w.write.Close()
	if err != nil {
		return usage{}, err
	}
	err = w.cmd.Wait()
	data, rerr := io.ReadAll(w.report)
	if err != nil {
		return usage{}, fmt.Errorf("%v\n%s", err, w.output.Bytes())
	}
	if rerr != nil {
		return usage{}, fmt.Errorf("read resource usage: %w", rerr)
	}
	var ut, st, rss int64
	if _, err := fmt.Sscan(string(data), &ut, &st, &rss); err != nil {
		return usage{}, fmt.Errorf("read resource usage %q: %w", data, err)
	}
	return usage{cpu: float64(ut+st) / 1e6, rssKB: rss}, nil
}
