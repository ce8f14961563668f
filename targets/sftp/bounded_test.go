package sftp

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/targets"
)

// TestBoundedReads checks that ReadFileMax and HashFile never read more
// than their bound: a file larger than it, and a link to /dev/zero (which
// the server follows and which never ends), fail promptly with an error
// wrapping targets.ErrTooLarge (HashFile: or refusing what is not a regular
// file) that names the difusor and the file.
func TestBoundedReads(t *testing.T) {
	srv := newOSServer(t)
	tg := newTarget(t, configFor(srv))
	ctx := t.Context()
	data := []byte(strings.Repeat("prep ", 1000))
	os.WriteFile(filepath.Join(srv.Root, "ok.json"), data, 0o644)
	os.WriteFile(filepath.Join(srv.Root, "big.json"), make([]byte, 1<<20), 0o644)
	if err := os.Symlink("/dev/zero", filepath.Join(srv.Root, "zero.json")); err != nil {
		t.Fatal(err)
	}
	if got, err := tg.ReadFileMax(ctx, "ok.json", int64(len(data))); err != nil || string(got) != string(data) {
		t.Fatalf("ReadFileMax of a file at its bound: %d bytes, %v", len(got), err)
	}
	if sum, n, err := tg.HashFile(ctx, "ok.json", int64(len(data))); err != nil || n != int64(len(data)) || sum != sha256.Sum256(data) {
		t.Fatalf("HashFile: %x %d %v", sum, n, err)
	}
	if _, _, err := tg.HashFile(ctx, "missing", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("HashFile of a missing file: %v", err)
	}
	for _, name := range []string{"big.json", "zero.json"} {
		start := time.Now()
		_, err := tg.ReadFileMax(ctx, name, 64<<10)
		_, _, herr := tg.HashFile(ctx, name, 64<<10)
		for _, e := range []error{err, herr} {
			// HashFile reads no further than the size the server reports,
			// and refuses what is not a regular file (the device).
			refused := errors.Is(e, targets.ErrTooLarge) || e == herr && e != nil && strings.Contains(e.Error(), "not a regular file")
			if !refused || !targets.IsPermanent(e) || !strings.Contains(e.Error(), name) || !strings.Contains(e.Error(), "difusor-1") {
				t.Errorf("%s: %v, want a permanent ErrTooLarge (or, hashing, not a regular file) naming the difusor and the file", name, e)
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: bounded reads took %v", name, d)
		}
	}
	// ReadFile itself is bounded too.
	if _, err := tg.ReadFile(ctx, "zero.json"); !errors.Is(err, targets.ErrTooLarge) {
		t.Errorf("ReadFile of a link to /dev/zero: %v", err)
	}
}

// TestRemoteTextIsEscaped checks that what a server says (an SFTP status
// message, a command's standard error) reaches the operator's terminal and
// the log escaped, while errors.Is still sees through it.
func TestRemoteTextIsEscaped(t *testing.T) {
	hostile := errors.Join(fs.ErrPermission, errors.New("denied\x1b[2J\x1b]0;pwned\x07\u202eevil\nsecond line"))
	tg := &Target{cfg: Config{Name: "difusor-1"}}
	err := tg.opErr("read", "json/main.json", hostile)
	s := err.Error()
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\n"} {
		if strings.Contains(s, bad) {
			t.Errorf("error text %q holds %q", s, bad)
		}
	}
	if !strings.Contains(s, `\x1b[2J`) || !strings.HasPrefix(s, "sftp difusor-1: read json/main.json: ") {
		t.Errorf("error text %q", s)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("the escaped error no longer wraps fs.ErrPermission")
	}
	plain := errors.New(`sftp: "no such file" (SSH_FX_NO_SUCH_FILE)`)
	if got := remoteText(plain); got != plain {
		t.Errorf("a safe error was rewrapped: %v", got)
	}
	var b tailBuffer
	b.Write([]byte("prepcast apply: refused\x1b[31m red \x1b[0m\n"))
	if s := b.String(); strings.Contains(s, "\x1b") {
		t.Errorf("command's standard error reaches the operator unescaped: %q", s)
	}
}
