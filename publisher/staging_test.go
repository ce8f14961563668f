package publisher

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// stagingFiles lists what the staging directory of mem holds.
func stagingFiles(mem *targettest.Mem) []string {
	var out []string
	for p := range mem.Files() {
		if strings.HasPrefix(p, StagingDir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// checkServed fails unless mem holds every file of cut seq with its bytes.
func checkServed(t *testing.T, f *fixture, mem *targettest.Mem, seq int64) {
	t.Helper()
	m, _, err := f.Store.Manifest(seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Entries {
		data, ok := mem.File(e.Path)
		sum := sha256.Sum256(data)
		if !ok || hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Errorf("%s: wrong or missing on the target", e.Path)
		}
	}
}

// addLarge puts a file of n random bytes into the fixture's source tree.
func (f *fixture) addLarge(rel string, n int) {
	f.T.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	p := filepath.Join(f.Src, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.T.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		f.T.Fatal(err)
	}
}

// isCutStaging reports whether p is the staging name of one of a cut's
// files (not the ack, not the published proof).
func isCutStaging(p string) bool {
	return strings.HasPrefix(p, StagingDir+"/") && !strings.HasSuffix(p, "ack.json") && !strings.HasPrefix(p, StagingDir+"/proof-")
}

// A push that fails while staging and succeeds on the next attempt counts
// the cut's files once, and its rate comes from the time every attempt
// spent staging (not 97,425 MB/s from the last attempt's few
// milliseconds).
func TestRetriedPushAccounting(t *testing.T) {
	f := newFixture(t)
	ci := f.Cut()
	m, _, _ := f.Store.Manifest(ci.Seq)
	var total int64
	for _, e := range m.Entries {
		total += e.Size
	}
	mem := targettest.NewMem("t")
	const writeDelay = 30 * time.Millisecond
	mem.Before = func(ctx context.Context, op targettest.Op) error {
		if op.Kind == targettest.OpWrite && isCutStaging(op.Path) {
			time.Sleep(writeDelay)
		}
		return nil
	}
	var failed atomic.Bool
	mem.FailWrite = func(p string) error {
		if isCutStaging(p) && failed.CompareAndSwap(false, true) {
			return errors.New("connection lost")
		}
		return nil
	}
	eng := f.engine()
	eng.Retry.Attempts = 3
	r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", r.Attempts)
	}
	if r.Files != len(m.Entries) {
		t.Errorf("files = %d, want %d (the cut's files, once)", r.Files, len(m.Entries))
	}
	if r.Bytes < total {
		t.Errorf("bytes = %d, want at least the cut's %d", r.Bytes, total)
	}
	// Both attempts waited writeDelay at least once while staging.
	if r.Wire < 2*writeDelay {
		t.Errorf("wire = %v, want at least %v (both attempts' staging)", r.Wire, 2*writeDelay)
	}
	if rate, ok := r.Rate(); !ok || rate > float64(r.Bytes)/(2*writeDelay).Seconds() {
		t.Errorf("rate = %.0f B/s (%v), want at most %.0f", rate, ok, float64(r.Bytes)/(2*writeDelay).Seconds())
	}
	checkServed(t, f, mem, ci.Seq)
}

// A commit that fails at every attempt does not count the cut's files at
// every attempt (1,616 for a 404-file cut).
func TestFailedCommitsCountNoFiles(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	mem := targettest.NewMem("t")
	mem.FailRename = func(oldpath, newpath string) error {
		if newpath == "json/main.json" {
			return errors.New("connection lost")
		}
		return nil
	}
	eng := f.engine()
	eng.Retry.Attempts = 4
	r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	if r.Err == nil || r.Attempts != 4 {
		t.Fatalf("err %v, attempts %d; want a failure after 4 attempts", r.Err, r.Attempts)
	}
	if r.Files != 0 {
		t.Errorf("files = %d for a push that acknowledged nothing, want 0", r.Files)
	}
}

// Failed pushes of one cut after another leave a bounded staging
// directory: files no push uses are removed once stale, files younger than
// StaleStaging (maybe another push's) stay.
func TestStagingBoundedAfterFailedPushes(t *testing.T) {
	f := newFixture(t)
	mem := targettest.NewMem("t")
	mem.FailRename = func(oldpath, newpath string) error {
		if newpath == "json/main.json" {
			return targets.Permanent(errors.New("refused"))
		}
		return nil
	}
	if err := mem.MkdirAll(context.Background(), StagingDir); err != nil {
		t.Fatal(err)
	}
	foreign := StagingDir + "/0123456789abcdef"
	if err := mem.SetFile(foreign, []byte("another push's file")); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	eng := f.engine()
	eng.Now = func() time.Time { return clock }
	var sizes []int
	for k := 1; k <= 4; k++ {
		ci := f.Cut()
		r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]
		if r.Err == nil {
			t.Fatalf("cut %d: push succeeded, want the refused pointer", k)
		}
		files := stagingFiles(mem)
		sizes = append(sizes, len(files))
		m, _, _ := f.Store.Manifest(ci.Seq)
		if len(files) > len(m.Entries)+1 {
			t.Errorf("cut %d: staging holds %d files, more than the cut's %d and one foreign: %v", k, len(files), len(m.Entries), files)
		}
		_, kept := mem.File(foreign)
		if k == 1 && !kept {
			t.Errorf("a staging file younger than StaleStaging was removed")
		}
		if k > 1 && kept {
			t.Errorf("cut %d: a stale foreign staging file was kept", k)
		}
		clock = clock.Add(2 * DefaultStaleStaging)
	}
	t.Logf("staging files after each failed push: %v", sizes)
}

// A push interrupted after staging a large file resumes it in a new
// process instead of sending it again; staged names that may be partial
// (small files, .part files) are never trusted.
func TestResumeAcrossProcesses(t *testing.T) {
	f := newFixture(t)
	f.addLarge("actas/grande.jpg", ResumeMinSize+12345)
	ci := f.Cut()
	m, _, _ := f.Store.Manifest(ci.Seq)
	var large, small packager.Entry
	for _, e := range m.Entries {
		if e.Path == "actas/grande.jpg" {
			large = e
		}
		if e.Path == "datos/PUE_GUB_2024.csv" {
			small = e
		}
	}
	mem := targettest.NewMem("t")
	stop := errors.New("killed")
	mem.FailRename = func(oldpath, newpath string) error {
		if newpath == large.Path {
			return targets.Permanent(stop)
		}
		return nil
	}
	if r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem}})[0]; !errors.Is(r.Err, stop) {
		t.Fatalf("first push: %v, want it stopped at the large file's commit", r.Err)
	}
	// The first process renamed the other files into place; put the
	// target back to "nothing committed" but keep the staged large file.
	whole := StagingDir + "/" + large.SHA256 + wholeSuffix
	if b, ok := mem.File(whole); !ok || len(b) != int(large.Size) {
		t.Fatalf("%s not staged whole (%d bytes, %v)", whole, len(b), ok)
	}
	for _, e := range m.Entries {
		_ = mem.Remove(context.Background(), e.Path)
	}
	// Leftovers that may be partial: a small file under its hash name with
	// the right size but wrong bytes.
	bad := make([]byte, small.Size)
	if err := mem.SetFile(StagingDir+"/"+small.SHA256, bad); err != nil {
		t.Fatal(err)
	}

	mem2 := mem
	mem2.FailRename = nil
	before := len(mem2.Ops())
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem2}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, op := range mem2.Ops()[before:] {
		if op.Kind == targettest.OpWrite && strings.Contains(op.Path, large.SHA256) {
			t.Errorf("the whole staged large file was sent again (%s)", op.Path)
		}
	}
	if r.Bytes >= large.Size {
		t.Errorf("second push sent %d bytes, want less than the resumed file's %d", r.Bytes, large.Size)
	}
	checkServed(t, f, mem2, ci.Seq)
}

// A large file's upload that dies midway leaves only a .part name, which
// the next process sends again.
func TestPartialLargeFileNotTrusted(t *testing.T) {
	f := newFixture(t)
	f.addLarge("actas/grande.jpg", ResumeMinSize+1)
	ci := f.Cut()
	m, _, _ := f.Store.Manifest(ci.Seq)
	var large packager.Entry
	for _, e := range m.Entries {
		if e.Path == "actas/grande.jpg" {
			large = e
		}
	}
	mem := targettest.NewMem("t")
	if err := mem.MkdirAll(context.Background(), StagingDir); err != nil {
		t.Fatal(err)
	}
	if err := mem.SetFile(StagingDir+"/"+large.SHA256+wholeSuffix+partSuffix, make([]byte, large.Size)); err != nil {
		t.Fatal(err)
	}
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Bytes < large.Size {
		t.Errorf("sent %d bytes, want the large file (%d) sent again", r.Bytes, large.Size)
	}
	checkServed(t, f, mem, ci.Seq)
}

// After a successful push the staging directory is kept, empty, for the
// next push (making it again costs round trips), and nothing is removed
// when the push's sweep found nothing the commit leaves behind; a file the
// sweep found that no push uses (another push's, too young to be stale) is
// removed with the directory once the cut is acknowledged.
func TestStagingKeptEmptyAfterPush(t *testing.T) {
	f := newFixture(t)
	mem := targettest.NewMem("t")
	eng := f.engine()
	removals := func() (n int) {
		for _, op := range mem.Ops() {
			if op.Kind == targettest.OpRemoveAll && op.Path == StagingDir {
				n++
			}
		}
		return n
	}
	for k := 1; k <= 2; k++ {
		ci := f.Cut()
		if r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		checkServed(t, f, mem, ci.Seq)
		if files := stagingFiles(mem); len(files) > 0 {
			t.Errorf("cut %d: staging holds %v after the ack", k, files)
		}
		if n := removals(); n != 0 {
			t.Errorf("cut %d: the staging directory was removed %d times; want it kept", k, n)
		}
	}
	foreign := StagingDir + "/0123456789abcdef"
	if err := mem.SetFile(foreign, []byte("another push's file")); err != nil {
		t.Fatal(err)
	}
	ci := f.Cut()
	if r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServed(t, f, mem, ci.Seq)
	if files := stagingFiles(mem); len(files) > 0 {
		t.Errorf("staging holds %v after the ack; want the foreign file removed", files)
	}
	if removals() != 1 {
		t.Errorf("the staging directory was removed %d times, want once (with the foreign file)", removals())
	}
}

// mixedCut cuts 20 large files (6 MB: more than a stage's buffers) and 150
// small ones, and returns the staging names of the small ones.
func mixedCut(t *testing.T, f *fixture) (*packager.CutInfo, map[string]bool) {
	t.Helper()
	for i := range 20 {
		f.addLarge(fmt.Sprintf("actas/a%02d.jpg", i), 300<<10)
	}
	for i := range 150 {
		f.addLarge(fmt.Sprintf("json/x%03d.json", i), 200)
	}
	ci := f.Cut()
	m, _, err := f.Store.Manifest(ci.Seq)
	if err != nil {
		t.Fatal(err)
	}
	small := map[string]bool{}
	for _, e := range m.Entries {
		if e.Size <= stageSmallFile {
			small[StagingDir+"/"+e.SHA256] = true
		}
	}
	return ci, small
}

// holdWrites makes mem's writes of the kind held (large: resumable names;
// else small ones) wait until the writes of the other kind that started
// reach want; a stage that cannot get there fails the test after 10 s.
func holdWrites(t *testing.T, mem *targettest.Mem, small map[string]bool, holdLarge bool, want int) func() {
	release := make(chan struct{})
	var mu sync.Mutex
	started := map[string]bool{}
	mem.Before = func(ctx context.Context, op targettest.Op) error {
		if op.Kind != targettest.OpWrite || !strings.HasPrefix(op.Path, StagingDir+"/") {
			return nil
		}
		large := strings.HasSuffix(op.Path, partSuffix)
		if !large && !small[op.Path] {
			return nil // the ack's or the proof's
		}
		if large == holdLarge {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if !started[op.Path] {
			started[op.Path] = true
			if len(started) == want {
				close(release)
			}
		}
		return nil
	}
	timeout := time.AfterFunc(10*time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		if len(started) < want {
			t.Errorf("only %d of %d files were written while the others waited", len(started), want)
			close(release)
		}
	})
	return func() { timeout.Stop() }
}

// Small files are written while large ones wait for buffers or are being
// written: their round trips overlap the large files' bytes instead of
// following them. Here the large files' writes hold until every small
// file's write has started; a stage that queued small files behind large
// ones would not get there.
func TestSmallFilesNotHeldBehindLarge(t *testing.T) {
	f := newFixture(t)
	ci, small := mixedCut(t, f)
	mem := targettest.NewMem("t")
	defer holdWrites(t, mem, small, true, len(small))()
	if r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServed(t, f, mem, ci.Seq)
}

// And the other way round: many small files never take every write slot,
// so large files keep being written (more of them than the buffers hold at
// once) while small ones wait.
func TestLargeFilesNotHeldBehindSmall(t *testing.T) {
	f := newFixture(t)
	ci, small := mixedCut(t, f)
	mem := targettest.NewMem("t")
	defer holdWrites(t, mem, small, false, 16)()
	if r := f.engine().Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServed(t, f, mem, ci.Seq)
}
