package state

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tests in this file run a second process: the test binary itself, re-executed
// with -test.run selecting one of the TestHelper functions and the database
// path in helperEnv. A helper reports on stdout and, where it loops, stops
// when its stdin is closed.

const helperEnv = "PREPCAST_STATE_TEST_DB"

// startHelper starts the helper test name on the database at path and waits
// until it prints want. It returns the child and a function that closes the
// child's stdin.
func startHelper(t *testing.T, name, path, want string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Normally already waited for; this catches a test that failed early.
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if strings.TrimSpace(s.Text()) == want {
				line <- want
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-line:
	case <-time.After(30 * time.Second):
		t.Fatalf("helper %s did not print %q", name, want)
	}
	return cmd, func() { stdin.Close() }
}

// helperDB returns the database path for a helper, or skips the test when it
// is not running as a helper.
func helperDB(t *testing.T) string {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("runs only as a child process of another test")
	}
	return path
}

// TestHelperWriter writes acks, attempts and progress in a tight loop until
// its stdin is closed. It prints "ready" after its first ack.
func TestHelperWriter(t *testing.T) {
	path := helperDB(t)
	ctx := context.Background()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	for seq := int64(1); ; seq++ {
		select {
		case <-stop:
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		id, err := db.BeginAttempt(ctx, Attempt{Target: "t", Seq: seq, CutID: ack("t", seq).CutID, N: 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			p := Progress{Target: "t", Seq: seq, CutID: ack("t", seq).CutID, State: StateStaging,
				BytesDone: int64(i), BytesTotal: 10, Attempt: 1}
			if err := db.SetProgress(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.SetAck(ctx, ack("t", seq)); err != nil {
			t.Fatal(err)
		}
		if err := db.EndAttempt(ctx, id, time.Time{}, 10, 1, 0.1, ResultOK, ""); err != nil {
			t.Fatal(err)
		}
		if seq == 1 {
			if err := db.FlushProgress(ctx); err != nil {
				t.Fatal(err)
			}
			fmt.Println("ready")
		}
	}
}

// TestHelperAcker stores one ack, prints "acked" and waits to be killed.
func TestHelperAcker(t *testing.T) {
	path := helperDB(t)
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetAck(context.Background(), ack("t", 7)); err != nil {
		t.Fatal(err)
	}
	fmt.Println("acked")
	time.Sleep(time.Minute) // killed long before
	t.Fatal("not killed")
}

// TestReadWhileAnotherProcessWrites opens the database read-only while a
// child process writes it in a tight loop, and reads it 100 times: no read
// fails or waits long, and every read is consistent and never older than
// the one before.
func TestReadWhileAnotherProcessWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	child, stop := startHelper(t, "TestHelperWriter", path, "ready")

	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if ro != nil {
			ro.Close()
		}
	}()
	var first, last, lastProgress int64
	var slowest time.Duration
	for i := range 100 {
		start := time.Now()
		if i%25 == 24 { // status also opens while the push runs
			ro.Close()
			if ro, err = OpenReadOnly(path); err != nil {
				t.Fatal(err)
			}
		}
		acks, err := ro.Acks(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		a := acks["t"]
		if a.Seq < last || a != ack("t", a.Seq) {
			t.Fatalf("read %d: ack %+v after seq %d: went backwards or is inconsistent", i, a, last)
		}
		if i == 0 {
			first = a.Seq
		}
		last = a.Seq
		ps, err := ro.Progress(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if len(ps) != 1 || ps[0].PID != child.Process.Pid || !PIDAlive(ps[0].PID) || ps[0].Seq < lastProgress {
			t.Fatalf("read %d: progress %+v, want one row of live PID %d at seq >= %d", i, ps, child.Process.Pid, lastProgress)
		}
		lastProgress = ps[0].Seq
		if _, err := ro.History(ctx, "t", 10); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if _, err := ro.LastResults(ctx); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		slowest = max(slowest, time.Since(start))
		time.Sleep(2 * time.Millisecond)
	}
	if slowest > time.Second {
		t.Errorf("slowest read took %v while another process wrote", slowest)
	}
	t.Logf("acks seen: %d..%d; slowest read %v", first, last, slowest)
	if last == first {
		t.Errorf("reader saw ack seq %d throughout: the writer's commits were not visible", last)
	}

	// A second writer (a manual push next to a cron one) gets its turn.
	rw, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := rw.SetMeta(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatalf("write while another process writes: %v", err)
		}
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}

	stop()
	if err := child.Wait(); err != nil {
		t.Fatalf("writer process: %v", err)
	}
}

// TestAckSurvivesKill9 kills a process right after SetAck returned and finds
// the ack in the database, read-only first (as status would) and then
// read-write.
func TestAckSurvivesKill9(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	child, _ := startHelper(t, "TestHelperAcker", path, "acked")
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	child.Wait()

	// The ack is in the WAL, not yet checkpointed: what follows recovers it.
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left by the killed process (%v, %v): the test no longer exercises recovery", fi, err)
	}
	want := ack("t", 7)
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	acks, err := ro.Acks(ctx)
	ro.Close()
	if err != nil || acks["t"] != want {
		t.Fatalf("read-only after kill -9: Acks() = %v, %v; want %+v", acks, err, want)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acks, err = db.Acks(ctx)
	if err != nil || acks["t"] != want {
		t.Fatalf("read-write after kill -9: Acks() = %v, %v; want %+v", acks, err, want)
	}
	if err := db.SetAck(ctx, ack("t", 6)); err == nil {
		t.Error("SetAck backwards after recovery succeeded")
	}
}
