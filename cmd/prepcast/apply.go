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
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets/localfs"
)

// applyLockWait bounds the wait for another apply on the same root.
const applyLockWait = 2 * time.Minute

// cmdApply is the difusor's side of package mode: the publisher runs it
// over SSH and streams one package to its standard input.
func cmdApply(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("apply")
	root := fs.String("root", "", "the webroot to bring to the package's cut (required)")
	keyPath := fs.String("public-key", "", "the institute's manifest.pub; default: trust the publisher's key on first use and pin it in ROOT/.prepcast/publisher.pub")
	logPath := fs.String("log", "", "append a JSON log to this file (default: errors to standard error)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *root == "" {
		return &usageError{"apply: --root is required: the directory the difusor's web server serves"}
	}
	var pub ed25519.PublicKey
	if *keyPath != "" {
		k, err := packager.LoadPublicKey(*keyPath)
		if err != nil {
			return fmt.Errorf("%w: apply: --public-key: %w", errConfig, err)
		}
		pub = k
	}
	log, closeLog, err := applyLogger(*logPath, stderr)
	if err != nil {
		return err
	}
	defer closeLog()

	// The publisher's connection may drop once the package has arrived:
	// the commit then still finishes, and the ack tells the next push.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	abs, err := filepath.Abs(*root)
	if err != nil {
		return fmt.Errorf("apply: root: %w", err)
	}
	if f, ok := stdin.(*os.File); ok {
		growPipe(f)
	}
	return applyToRoot(ctx, abs, pub, newReadAhead(stdin, 1<<20, 8), stdout, log)
}

// applyToRoot applies the package on in to the webroot at root (absolute),
// holding the root's apply lock: what "prepcast apply" does once its flags
// are read, and what the demo's package-mode difusor runs.
func applyToRoot(ctx context.Context, root string, pub ed25519.PublicKey, in io.Reader, out io.Writer, log *zap.Logger) error {
	t, err := localfs.New("webroot", root)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer t.Close()
	unlock, err := lockRoot(ctx, root)
	if err != nil {
		return err
	}
	defer unlock()
	return publisher.Apply(ctx, publisher.ApplyOptions{
		Target: t, PublicKey: pub, In: in, Out: out, Version: version, Log: log,
	})
}

// lockRoot takes ROOT/.prepcast/apply.lock, waiting for another apply to
// finish; the kernel releases it if the holder dies.
func lockRoot(ctx context.Context, root string) (func(), error) {
	dir := filepath.Join(root, safepath.Reserved)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "apply.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("apply: lock: %w", err)
	}
	deadline := time.Now().Add(applyLockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("apply: lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("apply: another prepcast apply has held %s for %v; is a push stuck? (it is released when that process ends)", f.Name(), applyLockWait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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
