package sftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

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

// Small files written at once go over the extra write sessions too (each
// session's channel window bounds what it carries per round trip); an
// extra session that ends while the connection lives is left out, and the
// writes go on.
func TestSmallWritesSpreadOverSessions(t *testing.T) {
	tg, s := sshdTarget(t, sshdtest.Options{})
	ctx := context.Background()
	if !tg.pipelines(ctx) {
		t.Fatal("OpenSSH offers copy-data, but small files do not go pipelined")
	}
	files := map[string][]byte{}
	for i := range 48 {
		data := make([]byte, 100<<10+i)
		_, _ = rand.Read(data)
		files[fmt.Sprintf("f/%02d.jpg", i)] = data
	}
	write := func() {
		t.Helper()
		var g errgroup.Group
		g.SetLimit(16)
		for p, data := range files {
			g.Go(func() error { return tg.WriteFile(ctx, p, bytes.NewReader(data), int64(len(data))) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		for p, data := range files {
			got, err := os.ReadFile(filepath.Join(s.Root(), p))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: %d bytes on the server, %v; want the %d written", p, len(got), err, len(data))
			}
		}
	}
	// The extra sessions open in the background at the first write.
	if err := tg.MkdirAll(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	write()
	c, err := tg.getConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.wr.mu.Lock()
		n := len(c.wr.extra)
		c.wr.mu.Unlock()
		if n == extraWriteSessions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d extra write sessions open, want %d", n, extraWriteSessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
	write()
	c.wr.mu.Lock()
	extra := append([]*rawSession(nil), c.wr.extra...)
	c.wr.mu.Unlock()
	used := 0
	for _, x := range extra {
		if x.wrote.Load() > 0 {
			used++
		}
	}
	if used == 0 {
		t.Fatal("no small file went over an extra write session")
	}
	// One extra session ends; the others and the first carry on.
	_ = extra[0].sess.Close()
	write()
	if c.cause() != nil {
		t.Fatalf("connection died with a session: %v", c.cause())
	}
}

// A session never has more than sessionWriteMax bytes of small files in
// flight: the next file waits for room, on the session with the fewest
// bytes, and a file larger than the bound goes alone on an idle session.
func TestWritesInFlightPerSessionBounded(t *testing.T) {
	c := &conn{}
	first, extra := &rawSession{}, &rawSession{}
	c.wr.extra = []*rawSession{extra}
	half := sessionWriteMax / 2
	s1, rel1, err := c.reserveWrite(context.Background(), first, half+1, func() {})
	if err != nil || s1 != first {
		t.Fatalf("first reservation: session %p, err %v; want the first session", s1, err)
	}
	s2, rel2, err := c.reserveWrite(context.Background(), first, half+1, func() {})
	if err != nil || s2 != extra {
		t.Fatalf("second reservation: session %p, err %v; want the idle extra session", s2, err)
	}
	// Both sessions hold more than half the bound: a third file waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.reserveWrite(ctx, first, half, func() {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third reservation over the bound: %v, want it to wait until its context ends", err)
	}
	got := make(chan *rawSession)
	go func() {
		s, rel, err := c.reserveWrite(context.Background(), first, half, func() {})
		if err != nil {
			t.Error(err)
		}
		rel()
		got <- s
	}()
	time.Sleep(10 * time.Millisecond)
	rel2()
	if s := <-got; s != extra {
		t.Fatalf("the waiting file went to %p, want the session whose bytes were released", s)
	}
	rel1()
	if first.writing.Load() != 0 || extra.writing.Load() != 0 {
		t.Fatalf("bytes still reserved after every release: %d and %d", first.writing.Load(), extra.writing.Load())
	}
	if first.wrote.Load()+extra.wrote.Load() != int64(3*half+2) {
		t.Fatalf("wrote %d bytes in all, want %d", first.wrote.Load()+extra.wrote.Load(), 3*half+2)
	}
	// A file larger than the bound goes alone on an idle session.
	s, rel, err := c.reserveWrite(context.Background(), first, 2*sessionWriteMax, func() {})
	if err != nil || s == nil {
		t.Fatalf("a file over the bound on idle sessions: %v", err)
	}
	rel()
}
