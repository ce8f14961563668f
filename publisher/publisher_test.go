package publisher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/internal/cuttest"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
	"github.com/prepcast/prepcast/targets/targettest"
)

// fixture is an institute: a store of signed cuts of a small results tree.
type fixture struct{ *cuttest.Institute }

func newFixture(t *testing.T) *fixture { return &fixture{cuttest.NewInstitute(t)} }

func (f *fixture) engine() *Engine {
	return &Engine{Store: f.Store, PublicKey: f.Pub, Log: zaptest.NewLogger(f.T),
		Retry: RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: 5 * time.Millisecond}, CycleTimeout: 30 * time.Second}
}

func sftpTarget(t *testing.T, name string, s *targettest.Server) *sftptarget.Target {
	tg, err := sftptarget.New(sftptarget.Config{Name: name, Address: s.Addr, User: s.User, Root: s.Root,
		IdentityFile: s.ClientKeyPath, HostKey: s.HostKeyLine, OpTimeout: 5 * time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// readAll reads a file through the target.
func readAll(t *testing.T, tg targets.Target, p string) string {
	t.Helper()
	b, err := tg.ReadFile(context.Background(), p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

// The in-memory request server refuses a plain rename onto an existing
// file; pointers must still switch, through posix-rename.
func TestPointerSwitchesOnMemFS(t *testing.T) {
	f := newFixture(t)
	srv := targettest.NewSFTPServer(t, "/www", targettest.WithMemFS())
	tg := sftpTarget(t, "mem", srv)
	eng := f.engine()
	for k := 1; k <= 3; k++ {
		ci := f.Cut()
		r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		if got, want := readAll(t, tg, "json/main.json"), fmt.Sprintf(`{"corte":"json/c%03d/totales.json"}`, k); got != want {
			t.Fatalf("cut %d: main.json = %s, want %s", k, got, want)
		}
		if r.Ack.Seq != ci.Seq {
			t.Fatalf("acked %d, want %d", r.Ack.Seq, ci.Seq)
		}
	}
}

func TestServerWithoutPosixRenameRefused(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	srv := targettest.NewSFTPServer(t, "", targettest.WithoutPosixRename())
	tg := sftpTarget(t, "old-server", srv)
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: tg}})[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "posix-rename") || !targets.IsPermanent(r.Err) {
		t.Fatalf("server without posix-rename: %v", r.Err)
	}
	if r.Attempts != 1 {
		t.Errorf("refusal retried: %d attempts", r.Attempts)
	}
	des, _ := os.ReadDir(srv.Root)
	if len(des) != 0 {
		t.Errorf("files were written to a refused target: %v", des)
	}
}

// A garbled ack makes the target reconciled by listing: only what differs
// is sent, and files the cut does not have are left in place (they may be
// the difusor's own).
func TestGarbledAckReconciles(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	srv := targettest.NewSFTPServer(t, "")
	tg := sftpTarget(t, "t", srv)
	eng := f.engine()
	if r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	os.WriteFile(filepath.Join(srv.Root, ".prepcast", "ack.json"), []byte("{garbage"), 0o644)
	ci := f.Cut()
	r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if !r.Reconciled || r.Ack.Seq != ci.Seq {
		t.Fatalf("reconciled=%v ack=%+v", r.Reconciled, r.Ack)
	}
	// Reconciling sends the pointer and what differs in size, not everything.
	m, _, _ := f.Store.Manifest(ci.Seq)
	if r.Files >= len(m.Entries) {
		t.Errorf("reconcile sent %d of %d files", r.Files, len(m.Entries))
	}
	if len(r.Ack.Retired) != 0 {
		t.Errorf("reconcile retired files it cannot know are its own: %+v", r.Ack.Retired)
	}
}

// A target that holds a newer cut than the local store is never rolled back.
func TestNoRollback(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	srv := targettest.NewSFTPServer(t, "")
	tg := sftpTarget(t, "t", srv)
	ack := &Ack{Format: AckFormat, Seq: 99, ID: "20240603_0300", Manifest: strings.Repeat("ab", 32), Time: time.Now()}
	os.MkdirAll(filepath.Join(srv.Root, ".prepcast"), 0o755)
	os.WriteFile(filepath.Join(srv.Root, ".prepcast", "ack.json"), ack.Encode(), 0o644)
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: tg}})[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "roll") {
		t.Fatalf("rollback not refused: %v", r.Err)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, "json", "main.json")); err == nil {
		t.Error("files written to a target that holds a newer cut")
	}
}

// A stored object that no longer matches its hash is never pushed.
func TestCorruptObjectNeverPushed(t *testing.T) {
	f := newFixture(t)
	ci := f.Cut()
	m, _, _ := f.Store.Manifest(ci.Seq)
	ent, _ := m.Lookup("datos/PUE_GUB_2024.csv")
	cuttest.FlipByte(t, f.Store.ObjectPath(ent.SHA256), 0)
	// Several targets at once: one upload checks the object as it reads
	// it, the others wait for its verdict; none may commit the file.
	var srvs []*targettest.Server
	var specs []TargetSpec
	for i := range 4 {
		srv := targettest.NewSFTPServer(t, "")
		srvs = append(srvs, srv)
		specs = append(specs, TargetSpec{Target: sftpTarget(t, fmt.Sprint("t", i), srv)})
	}
	mem := &backwardsMem{targettest.NewMem("mem")} // reads out of order
	specs = append(specs, TargetSpec{Target: mem})
	for _, r := range f.engine().Push(context.Background(), specs) {
		if r.Err == nil || !strings.Contains(r.Err.Error(), "corrupt") || !targets.IsPermanent(r.Err) {
			t.Fatalf("%s: corrupt object: %v", r.Target, r.Err)
		}
	}
	for _, srv := range srvs {
		if _, err := os.Stat(filepath.Join(srv.Root, "datos", "PUE_GUB_2024.csv")); err == nil {
			t.Error("corrupt object reached the target")
		}
		if _, err := os.Stat(filepath.Join(srv.Root, ".prepcast", "ack.json")); err == nil {
			t.Error("target acked a cut with a corrupt object")
		}
	}
	if _, ok := mem.File("datos/PUE_GUB_2024.csv"); ok {
		t.Error("corrupt object reached the in-memory target")
	}
}

// An intact object is read once for its check, however many targets get it.
func TestObjectCheckedOncePerProcess(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	eng := f.engine()
	var specs []TargetSpec
	for i := range 3 {
		specs = append(specs, TargetSpec{Target: sftpTarget(t, fmt.Sprint("t", i), targettest.NewSFTPServer(t, ""))})
	}
	for _, r := range eng.Push(context.Background(), specs) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for sha, v := range eng.verified {
		if ok, err := v.result(); !ok || err != nil {
			t.Errorf("object %.12s: checked=%v err=%v after the push", sha, ok, err)
		}
	}
}

// Files that left the manifest stay for the retention window, then go.
func TestRetiredFilesDeletedAfterWindow(t *testing.T) {
	f := newFixture(t)
	srv := targettest.NewSFTPServer(t, "")
	tg := sftpTarget(t, "t", srv)
	now := time.Date(2024, 6, 2, 21, 0, 0, 0, time.UTC)
	eng := f.engine()
	eng.RetentionWindow = 30 * time.Minute
	eng.Now = func() time.Time { return now }
	push := func() Result {
		r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	f.Cut()
	push()
	f.Cut() // json/c001 leaves the manifest
	push()
	old := filepath.Join(srv.Root, "json", "c001", "totales.json")
	if _, err := os.Stat(old); err != nil {
		t.Fatal("a file that just left the manifest was deleted before the window passed")
	}
	now = now.Add(31 * time.Minute)
	r := push() // no new cut: only retirement
	if _, err := os.Stat(old); err == nil {
		t.Fatal("retired file still there after the window")
	}
	if _, err := os.Stat(filepath.Dir(old)); err == nil {
		t.Error("the emptied directory of the retired cut is still there")
	}
	if len(r.Ack.Retired) != 0 {
		t.Errorf("ack still lists retired files: %+v", r.Ack.Retired)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, "json", "c002", "totales.json")); err != nil {
		t.Fatal("a current file was deleted")
	}
}

func FuzzParseAck(f *testing.F) {
	a := &Ack{Format: AckFormat, Seq: 3, ID: "20240603_0100", Manifest: strings.Repeat("0f", 32), Time: time.Now().UTC(),
		Retired: []Retired{{Path: "json/c001/totales.json", Since: time.Now().UTC()}}}
	f.Add(a.Encode())
	f.Add([]byte(`{"format":"prepcast-ack/1","seq":1}`))
	f.Add([]byte(`{"retired":[{"path":"../../etc/passwd"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAck(data)
		if err != nil {
			return
		}
		for _, r := range a.Retired {
			if strings.HasPrefix(r.Path, "/") || strings.Contains("/"+r.Path+"/", "/../") {
				t.Fatalf("accepted unsafe retired path %q", r.Path)
			}
		}
		if _, err := ParseAck(a.Encode()); err != nil {
			t.Fatalf("re-encoded ack does not parse: %v", err)
		}
	})
}

// lostReply is a target whose first rename onto a given path takes effect
// but reports a lost connection, as when the server's reply is lost.
type lostReply struct {
	*targettest.Mem
	path string
	done bool
}

func (l *lostReply) Rename(ctx context.Context, oldpath, newpath string) error {
	err := l.Mem.Rename(ctx, oldpath, newpath)
	if err == nil && newpath == l.path && !l.done {
		l.done = true
		return errors.New("connection lost")
	}
	return err
}

// A commit whose reply was lost is retried: the staged file is gone, so it
// is sent again, and the target ends with the right bytes.
func TestCommitAfterLostReply(t *testing.T) {
	f := newFixture(t)
	ci := f.Cut()
	mem := &lostReply{Mem: targettest.NewMem("t"), path: "datos/PUE_GUB_2024.csv"}
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Attempts != 2 || r.Ack.Seq != ci.Seq || !mem.done {
		t.Fatalf("attempts %d, ack %+v, reply lost: %v", r.Attempts, r.Ack, mem.done)
	}
	m, _, _ := f.Store.Manifest(ci.Seq)
	for _, e := range m.Entries {
		data, ok := mem.File(e.Path)
		sum := sha256.Sum256(data)
		if !ok || hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Errorf("%s: wrong or missing on the target", e.Path)
		}
	}
}

// slowMem holds every upload until released, so a test can drain mid-push.
type slowMem struct {
	*targettest.Mem
	started chan string
	release chan struct{}
}

func (s *slowMem) WriteFile(ctx context.Context, p string, r io.Reader, size int64) error {
	if strings.HasPrefix(p, StagingDir+"/") && !strings.HasSuffix(p, "ack.json") {
		s.started <- p
		<-s.release
	}
	return s.Mem.WriteFile(ctx, p, r, size)
}

// Draining finishes the uploads in flight, starts no more, commits nothing:
// the target keeps its previous cut.
func TestDrainStopsAfterFilesInFlight(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	mem := &slowMem{Mem: targettest.NewMem("t"), started: make(chan string, 100), release: make(chan struct{})}
	close(mem.release)
	eng := f.engine()
	if r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	for len(mem.started) > 0 {
		<-mem.started
	}
	before, _ := mem.File("json/main.json")
	ci := f.Cut()
	mem.release = make(chan struct{})
	drain := make(chan struct{})
	eng.Drain = drain
	eng.FilesInFlight = 1
	done := make(chan Result)
	go func() { done <- eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0] }()
	first := <-mem.started // one upload in flight
	close(drain)
	close(mem.release)
	r := <-done
	if !errors.Is(r.Err, ErrStopped) {
		t.Fatalf("drained push: %v", r.Err)
	}
	if r.Files != 0 && r.Attempts != 1 {
		t.Errorf("attempts %d", r.Attempts)
	}
	if n := len(mem.started); n != 0 {
		t.Errorf("%d uploads started after the drain (first was %s)", n, first)
	}
	after, _ := mem.File("json/main.json")
	if string(after) != string(before) {
		t.Error("the pointer switched during a drained push")
	}
	if data, _ := mem.File(AckPath); strings.Contains(string(data), fmt.Sprintf(`"seq": %d`, ci.Seq)) {
		t.Error("the target acked the drained cut")
	}
}

// backwardsMem reads what it writes with ReadAt, last chunk first, as a
// target writing parts of a file concurrently may.
type backwardsMem struct{ *targettest.Mem }

func (b *backwardsMem) WriteFile(ctx context.Context, p string, r io.Reader, size int64) error {
	ra, ok := r.(io.ReaderAt)
	if !ok {
		return b.Mem.WriteFile(ctx, p, r, size)
	}
	buf := make([]byte, size)
	const chunk = 1000
	for off := (size - 1) / chunk * chunk; off >= 0 && size > 0; off -= chunk {
		if _, err := ra.ReadAt(buf[off:min(off+chunk, size)], off); err != nil && err != io.EOF {
			return err
		}
	}
	return b.Mem.WriteFile(ctx, p, bytes.NewReader(buf), size)
}

func TestObjectReadOutOfOrderIsCheckedWhole(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	eng := f.engine()
	b := &backwardsMem{targettest.NewMem("b")}
	if r := eng.Push(context.Background(), []TargetSpec{{Target: b}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	for sha, v := range eng.verified {
		if ok, err := v.result(); !ok || err != nil {
			t.Errorf("object %.12s: checked=%v err=%v", sha, ok, err)
		}
	}
}
