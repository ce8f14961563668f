package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/prepcast/prepcast/apply"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets/localfs"
)

// applyMemoryLimit is the Go heap "prepcast apply" aims to stay under
// (runtime/debug.SetMemoryLimit); with its bounds on every input, apply
// stays under 64 MB of resident memory.
const applyMemoryLimit = 40 << 20

// cmdApply is the difusor's side of package mode: the publisher runs it
// over SSH and streams one package to its standard input.
func cmdApply(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("apply")
	root := fs.String("root", "", "the webroot to bring to the package's cut (required)")
	keyPath := fs.String("public-key", "", "the institute's manifest.pub: every cut must be signed with it (recommended)")
	tofu := fs.Bool("trust-on-first-use", false, "without --public-key: pin the key of the first package that verifies completely in ROOT/.prepcast/institute.pub (prints a warning)")
	retention := fs.Duration("retention", apply.DefaultRetention, "how long files that left the cut stay for readers of the previous cut (at least 1m)")
	logPath := fs.String("log", "", "append a JSON log to this file (default: errors to standard error)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *root == "" {
		return &usageError{"apply: --root is required: the directory the difusor's web server serves"}
	}
	if *retention < apply.MinRetention {
		return &usageError{fmt.Sprintf("apply: --retention %v is shorter than %v: readers of the previous cut must still find its files", *retention, apply.MinRetention)}
	}
	var pub ed25519.PublicKey
	if *keyPath != "" {
		k, err := packager.LoadPublicKey(*keyPath)
		if err != nil {
			return fmt.Errorf("%w: apply: --public-key: %w", errConfig, err)
		}
		pub = k
	}
	if pub != nil && *tofu {
		return &usageError{"apply: --trust-on-first-use is for a difusor without --public-key; give one or the other"}
	}
	if pub == nil && *tofu {
		fmt.Fprintln(stderr, apply.TrustOnFirstUseWarning)
	}
	log, closeLog, err := applyLogger(*logPath, stderr)
	if err != nil {
		return err
	}
	defer closeLog()

	// The publisher's connection may drop once the package has arrived:
	// the commit then still finishes, and the ack tells the next push.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	debug.SetMemoryLimit(applyMemoryLimit)

	abs, err := filepath.Abs(*root)
	if err != nil {
		return fmt.Errorf("apply: root: %w", err)
	}
	if f, ok := stdin.(*os.File); ok {
		growPipe(f)
	}
	err = applyToRoot(ctx, abs, apply.Options{PublicKey: pub, TrustOnFirstUse: *tofu, Retention: *retention,
		In: newReadAhead(stdin, 1<<20, 8), Out: stdout, Log: log})
	if errors.Is(err, apply.ErrNoKey) {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	return err
}

// applyToRoot applies the package on o.In to the webroot at root
// (absolute), holding the root's apply lock: what "prepcast apply" does
// once its flags are read, and what the demo's package-mode difusor runs.
func applyToRoot(ctx context.Context, root string, o apply.Options) error {
	t, err := localfs.New("webroot", root)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer t.Close()
	unlock, err := apply.LockRoot(ctx, root, apply.LockWait)
	if err != nil {
		return err
	}
	defer unlock()
	o.Target, o.Version = t, version
	return apply.Apply(ctx, o)
}

// applyLogger logs errors to stderr (the publisher shows them), or
// everything as JSON to a file.
func applyLogger(path string, stderr io.Writer) (*zap.Logger, func(), error) {
	if path == "" {
		enc := zap.NewDevelopmentEncoderConfig()
		enc.TimeKey = ""
		core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(stderr), zap.ErrorLevel)
		return zap.New(core), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("apply: --log: %w", err)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(f), zap.InfoLevel)
	return zap.New(core), func() { _ = f.Close() }, nil
}
