// Command prepcast publishes PREP election-night results: it snapshots the
// results tree into signed, checksummed cuts and pushes each cut over SFTP
// to every difusor, atomically, with per-difusor acknowledgement.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	_ "time/tzdata" // cut ids and schedules work on machines without zoneinfo

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/packager"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes, part of the CLI contract.
const (
	exitOK          = 0
	exitFailed      = 1 // some targets failed or lag
	exitUsage       = 2 // usage or config error
	exitInterrupted = 130
)

// drain is closed on the first SIGINT or SIGTERM of a command that pushes:
// pushes finish the files in flight and stop, leaving every difusor on a
// whole cut. A second signal (or any signal to another command) cancels at
// once. It is nil (never closed) when run is called from tests.
var drain chan struct{}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	pushes := len(os.Args) > 1 && (os.Args[1] == "push" || os.Args[1] == "cycle" || os.Args[1] == "run")
	if pushes {
		drain = make(chan struct{})
	}
	go func() {
		<-sigs
		if pushes {
			fmt.Fprintln(os.Stderr, "prepcast: stopping after the files in flight (interrupt again to stop at once)")
			close(drain)
			<-sigs
		}
		cancel()
	}()
	stopProfile := startProfile(os.Getenv("PREPCAST_CPUPROFILE"))
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}

// startProfile writes a CPU profile of the whole command to path (for
// "go tool pprof"), when path is set; the returned function ends it.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "prepcast: PREPCAST_CPUPROFILE: %v (running without a profile)\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// draining reports whether a graceful stop was asked for.
func draining() bool {
	select {
	case <-drain:
		return true
	default:
		return false
	}
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// failedError means the command ran but some targets failed or lag; it has
// already said so.
var errFailed = errors.New("some targets did not acknowledge the latest cut")

const usage = `prepcast publishes PREP results to difusores over SFTP.

Usage:
  prepcast keygen   [--out DIR]                       ed25519 signing key pair for manifests
  prepcast cut      [--config F] [--source DIR] [--rehash] [--allow-empty]
                                                      build the next cut; prints its seq and id
  prepcast cuts     [--config F]                      list cuts in the local store
  prepcast package  [--config F] [--cut N] [--from M] --out F|-
                                                      write a cut's package (tar in zstd), checked
  prepcast push     [--config F] [--target NAME]...   push the latest cut until each target acks it
  prepcast cycle    [--config F]                      cut + push; what cron runs; never overlaps a push
  prepcast run      [--config F]                      daemon: the configured schedule, /metrics, /status
  prepcast status   [--config F] [--json] [--watch] [--probe]
                                                      per-target lag; exit 1 if over max_lag
  prepcast apply    --root DIR --public-key F | --trust-on-first-use [--retention D]
                                                      on a difusor: apply the package on stdin
                                                      (what mode: exec targets run over SSH)
  prepcast demo     [--cuts N] [--difusores N] [--keep]   local difusores, a replayed election night
  prepcast version

--config defaults to ./prepcast.yaml. Exit codes: 0 all good; 1 some targets
failed or lag; 2 usage or config error; 130 interrupted.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "keygen":
		err = cmdKeygen(rest, stdout)
	case "cut":
		err = cmdCut(ctx, rest, stdout, stderr)
	case "cuts":
		err = cmdCuts(rest, stdout)
	case "package":
		err = cmdPackage(rest, stdout, stderr)
	case "push":
		err = cmdPush(ctx, rest, stdout, stderr, false)
	case "cycle":
		err = cmdPush(ctx, rest, stdout, stderr, true)
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr)
	case "status":
		err = cmdStatus(ctx, rest, stdout)
	case "apply":
		err = cmdApply(ctx, rest, os.Stdin, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "prepcast", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = &usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	return exitCode(ctx, err, stderr)
}

func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	var ue *usageError
	var ce *config.Error
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case (ctx.Err() != nil || draining()) && (errors.Is(err, context.Canceled) || errors.Is(err, errInterrupted)):
		fmt.Fprintln(stderr, "prepcast: interrupted")
		return exitInterrupted
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "prepcast: %v\n\n%s", err, usage)
		return exitUsage
	case errors.As(err, &ce), errors.Is(err, errConfig):
		fmt.Fprintln(stderr, "prepcast:", err)
		return exitUsage
	case errors.Is(err, errFailed):
		return exitFailed
	default:
		fmt.Fprintln(stderr, "prepcast:", err)
		if ctx.Err() != nil {
			return exitInterrupted
		}
		return exitFailed
	}
}

var (
	errInterrupted = errors.New("interrupted")
	errConfig      = errors.New("config error")
)

// newFlags returns a flag set for a subcommand whose errors are returned,
// not printed and exited on.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("prepcast "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// loadTargetsConfig is loadConfig for commands that push: the config must
// name at least one enabled target.
func loadTargetsConfig(path string) (*config.Config, error) {
	c, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	if err := c.RequireTargets(); err != nil {
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	return c, nil
}

// loadStore loads the config file named by --config and opens its cut
// store.
func loadStore(path string) (*config.Config, *packager.Store, error) {
	c, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return nil, nil, err
	}
	return c, store, nil
}

// loadConfig loads the config file named by --config.
func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: state_dir: %w", errConfig, err)
	}
	return c, nil
}
