package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// WrapArg, as the first argument, makes a benchmark command run the rest of
// its arguments as a command and report that command's resource usage: a
// benchmark calls WrapMain first thing when os.Args[1] is WrapArg, and Wrap
// to start a measured command through itself.
//
// A child's peak RSS as wait4 reports it is at least the parent's own peak
// at the moment of the fork: the kernel records the old address space's
// high-water mark when the child execs, and Go's fork shares the parent's
// address space until then. The benchmark itself holds far more memory than
// the tools it measures, so each measured command is started by a fresh,
// small benchmark process whose own peak is the only floor (a few MB).
const WrapArg = "-rusage-wrapper"

// Usage is what the wrapper reports of the command it ran.
type Usage struct {
	CPU   float64 // user + system seconds of the command and all it waited for
	RSSKB int64   // peak resident set of the largest process in the command's tree
}

// WrapMain runs args as a command in its own process group with the
// wrapper's standard streams, forwards SIGTERM and SIGINT to that group,
// writes "utime_usec stime_usec maxrss_kb" to file descriptor 3 and exits
// with the command's exit status.
func WrapMain(args []string) {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "benchmark wrapper: no command")
		os.Exit(2)
	}
	c := exec.Command(args[0], args[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	err := c.Start()
	if err == nil {
		go func() {
			for sig := range sigs {
				_ = syscall.Kill(-c.Process.Pid, sig.(syscall.Signal))
			}
		}()
		err = c.Wait()
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintf(os.Stderr, "benchmark wrapper: run %s: %v\n", args[0], err)
		os.Exit(2)
	}
	ru := c.ProcessState.SysUsage().(*syscall.Rusage)
	report := os.NewFile(3, "rusage")
	fmt.Fprintf(report, "%d %d %d\n", usec(ru.Utime), usec(ru.Stime), ru.Maxrss)
	report.Close()
	os.Exit(c.ProcessState.ExitCode())
}

func usec(t syscall.Timeval) int64 { return t.Sec*1_000_000 + t.Usec }

// Wrapped is a command run through the wrapper.
type Wrapped struct {
	cmd    *exec.Cmd
	output bytes.Buffer
	report *os.File // read end of the wrapper's descriptor 3
	write  *os.File // write end, the parent's copy closed once started
}

// Wrap returns c to be run through the wrapper; c itself is never started.
func Wrap(c *exec.Cmd) (*Wrapped, error) {
	if c.Err != nil {
		return nil, c.Err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the benchmark executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	w2 := &Wrapped{report: r, write: w}
	w2.cmd = exec.Command(self, append([]string{WrapArg, c.Path}, c.Args[1:]...)...)
	w2.cmd.Env, w2.cmd.Dir = c.Env, c.Dir
	w2.cmd.Stdout, w2.cmd.Stderr = &w2.output, &w2.output
	w2.cmd.ExtraFiles = []*os.File{w}
	return w2, nil
}

// Run runs the wrapped command and returns the command's usage.
func (w *Wrapped) Run() (Usage, error) {
	if err := w.Start(); err != nil {
		return Usage{}, err
	}
	return w.Wait()
}

// Start starts the wrapped command.
func (w *Wrapped) Start() error {
	err := w.cmd.Start()
	w.write.Close()
	if err != nil {
		w.report.Close()
	}
	return err
}

// Stop asks the wrapped command's process group to end (SIGTERM); Wait
// still reports its usage.
func (w *Wrapped) Stop() { _ = w.cmd.Process.Signal(syscall.SIGTERM) }

// Output is what the command wrote to its standard output and error; read
// it only after Wait.
func (w *Wrapped) Output() []byte { return w.output.Bytes() }

// Wait waits for the command started by Start and returns its usage. When
// the command failed (or was stopped), the usage the wrapper reported is
// returned with the error.
func (w *Wrapped) Wait() (Usage, error) {
	defer w.report.Close()
	err := w.cmd.Wait()
	data, rerr := io.ReadAll(w.report)
	var u Usage
	var ut, st, rss int64
	_, serr := fmt.Sscan(string(data), &ut, &st, &rss)
	if rerr == nil && serr == nil {
		u = Usage{CPU: float64(ut+st) / 1e6, RSSKB: rss}
	}
	switch {
	case err != nil:
		return u, fmt.Errorf("%v\n%s", err, w.output.Bytes())
	case rerr != nil:
		return u, fmt.Errorf("read resource usage: %w", rerr)
	case serr != nil:
		return u, fmt.Errorf("read resource usage %q: %w", data, serr)
	}
	return u, nil
}
