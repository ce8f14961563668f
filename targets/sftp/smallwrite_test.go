package sftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/prepcast/prepcast/integration/sshdtest"
)

// TestSmallWritesPipelined writes files around the pipelined size bounds
// on a real OpenSSH whose umask would hide them (internal-sftp -u 0077),
// flushed and not: the server holds exactly the bytes, with the
// configured mode, whichever way each file went; a source shorter than
// announced writes nothing under the name and says so.
func TestSmallWritesPipelined(t *testing.T) {
	tg, s := sshdTarget(t, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp internal-sftp -u 0077"}})
	ctx := context.Background()
	if !tg.pipelines(ctx) {
		t.Fatal("OpenSSH offers copy-data, but small files do not go pipelined")
	}
	for _, size := range []int{0, 1, rawChunk - 1, rawChunk, rawChunk + 1, smallWriteMax, smallWriteMax + 1} {
		for _, flush := range []bool{true, false} {
			data := make([]byte, size)
			_, _ = rand.Read(data)
			name := filepath.Join("d", "f"+string(rune('a'+size%26))+map[bool]string{true: "s", false: "n"}[flush])
			if err := tg.MkdirAll(ctx, "d"); err != nil {
				t.Fatal(err)
			}
			write := tg.WriteFile
			if !flush {
				write = tg.WriteFileNoSync
			}
			if err := write(ctx, name, bytes.NewReader(data), int64(size)); err != nil {
				t.Fatalf("%d bytes (flush %v): %v", size, flush, err)
			}
			p := filepath.Join(s.Root(), name)
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes (flush %v): the server holds %d other bytes (%v)", size, flush, len(got), err)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != DefaultFileMode {
				t.Fatalf("%d bytes: mode %04o, want %04o", size, fi.Mode().Perm(), DefaultFileMode)
			}
		}
	}
	err := tg.WriteFile(ctx, "short", io.LimitReader(bytes.NewReader(make([]byte, 100)), 60), 100)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short source: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(s.Root(), "short")); serr == nil {
		t.Fatal("a short source left a file")
	}
}
