package publisher

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// flushRecorder is a target that defers flushes and records, for each
// staged name, whether it was written flushed or flushed apart, and which
// files were not flushed when they were renamed into place.
type flushRecorder struct {
	*targettest.Mem
	mu        sync.Mutex
	started   []string        // staged names, in the order their writes started
	inline    map[string]bool // written with WriteFile (flushed as written)
	flushed   map[string]bool // flushed, as written or by SyncFiles
	unflushed []string        // renamed into place before any flush
}

var _ targets.DeferredSyncer = (*flushRecorder)(nil)

func newFlushRecorder() *flushRecorder {
	return &flushRecorder{Mem: targettest.NewMem("recorder"), inline: map[string]bool{}, flushed: map[string]bool{}}
}

func (f *flushRecorder) start(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, p)
}

func (f *flushRecorder) WriteFile(ctx context.Context, p string, r io.Reader, size int64) error {
	f.start(p)
	if err := f.Mem.WriteFile(ctx, p, r, size); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inline[p], f.flushed[p] = true, true
	return nil
}

func (f *flushRecorder) WriteFileNoSync(ctx context.Context, p string, r io.Reader, size int64) error {
	f.start(p)
	return f.Mem.WriteFile(ctx, p, r, size)
}

func (f *flushRecorder) SyncFiles(ctx context.Context, paths []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range paths {
		f.flushed[p] = true
	}
	return nil
}

func (f *flushRecorder) Rename(ctx context.Context, oldpath, newpath string) error {
	f.mu.Lock()
	if strings.HasPrefix(newpath, StagingDir+"/") {
		// A resumable file takes its whole name: its flush goes with it.
		f.flushed[newpath], f.inline[newpath] = f.flushed[oldpath], f.inline[oldpath]
	} else if strings.HasPrefix(oldpath, StagingDir+"/") && !f.flushed[oldpath] && !strings.HasSuffix(oldpath, ".json") {
		f.unflushed = append(f.unflushed, oldpath)
	}
	f.mu.Unlock()
	return f.Mem.Rename(ctx, oldpath, newpath)
}

// Of a stage larger than the write slots, the files that start once fewer
// than FilesInFlight are left to start, and every resumable file, are
// flushed as they are written (their flushes ride with the writes instead
// of following the last ones); the others are flushed apart; and no file
// is renamed into place before it was flushed.
func TestLastFilesFlushedAsWritten(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	tg := newFlushRecorder()
	eng := f.engine()
	eng.FilesInFlight = 4
	if r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	for i := range 40 {
		f.addLarge(fmt.Sprintf("actas/nueva-%02d.bin", i), 100)
	}
	f.addLarge("actas/grande-1.jpg", ResumeMinSize)
	f.addLarge("actas/grande-2.jpg", ResumeMinSize+1)
	f.Cut()
	tg.mu.Lock()
	tg.started, tg.unflushed = nil, nil
	tg.mu.Unlock()
	if r := eng.Push(context.Background(), []TargetSpec{{Target: tg}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var files []string // non-resumable staged files, in start order
	resumables := 0
	for _, p := range tg.started {
		switch {
		case strings.HasSuffix(p, partSuffix):
			resumables++
			if !tg.inline[p] {
				t.Errorf("resumable %s flushed apart, not as written", p)
			}
		case strings.HasPrefix(p, StagingDir+"/") && !strings.HasSuffix(p, ".json"):
			files = append(files, p)
		}
	}
	if resumables != 2 || len(files) < 40 {
		t.Fatalf("%d resumable and %d other files staged, want 2 and at least 40", resumables, len(files))
	}
	var inline []int
	for i, p := range files {
		if tg.inline[p] {
			inline = append(inline, i)
		}
	}
	// The last four files to start (resumable ones among them) are
	// flushed as written; files start four at a time, so those are among
	// the last eight the target saw start, in whatever order they reached it.
	if len(inline) < 1 || len(inline) > eng.FilesInFlight || inline[0] < len(files)-2*eng.FilesInFlight {
		t.Errorf("of %d files, those flushed as written are at %v; want the last ones to start", len(files), inline)
	}
	if len(tg.unflushed) > 0 {
		t.Errorf("renamed into place before a flush: %v", tg.unflushed)
	}
}
