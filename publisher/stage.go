package publisher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// staged is one file to upload: the entry and its staging name.
type staged struct {
	e    packager.Entry
	name string // below StagingDir
}

// stagingPlan names a staging file for every entry: the content hash, so
// that a retry finds what it already sent, with a suffix for content that
// appears at several paths; large files get resumable names (staging.go).
func stagingPlan(changed []packager.Entry) []staged {
	seen := map[string]int{}
	plan := make([]staged, 0, len(changed))
	for _, e := range changed {
		plan = append(plan, stageAs(seen, e))
	}
	markResumable(plan)
	return plan
}

// stageAs names e's staging file; seen counts the entries of the plan
// already named for each content hash.
func stageAs(seen map[string]int, e packager.Entry) staged {
	n := seen[e.SHA256]
	seen[e.SHA256] = n + 1
	name := StagingDir + "/" + e.SHA256
	if n > 0 {
		name = fmt.Sprintf("%s.%d", name, n)
	}
	return staged{e: e, name: name}
}

// earlyReads are the requests a push attempt in file mode makes before it
// stages, started in the background with the attempt (prepareEarly), so
// that they overlap the reading of the ack.
type earlyReads struct {
	prepared func() error       // the staging directory made
	listed   func() stagingList // and listed
	proof    *proofReads
}

// prepareEarly starts making and listing the staging directory and the
// proof's reads, for a target pushed file by file (nil for a package-mode
// target, which may not need them).
func (r *targetRun) prepareEarly(ctx context.Context) *earlyReads {
	if r.apply != "" {
		return nil
	}
	return &earlyReads{
		prepared: background.Go(func() error { return r.prepareStaging(ctx) }),
		listed:   background.Go(func() stagingList { return r.listStaging(ctx) }),
		proof:    r.readProof(ctx, true),
	}
}

// wait waits for the background requests, whether or not their results
// were used (nothing of an attempt outlives it).
func (e *earlyReads) wait() {
	if e != nil {
		_, _ = e.prepared(), e.listed()
		e.proof.wait()
	}
}

// prepareStaging creates the staging directory. Of the files an
// interrupted earlier process left there, only resumable files written
// whole are trusted (sweepStaging, called by stage); the rest are
// overwritten, removed once stale, or removed with the whole directory
// once a cut is acknowledged (cleanStaging), off the path to the new cut.
func (r *targetRun) prepareStaging(ctx context.Context) error {
	return r.mkdirs(ctx, []string{StagingDir})
}

// tidyStaging runs after the target acknowledged a cut: everything this
// attempt staged was renamed into place, so the staging directory holds
// only what the attempt's sweep found there and did not use (left files;
// -1 when the sweep could not tell). An empty
// directory is kept for the next push (creating it costs round trips);
// one that still holds files is removed with them (cleanStaging).
func (r *targetRun) tidyStaging(ctx context.Context, left int) {
	if left != 0 {
		r.cleanStaging(ctx)
	}
}

// cleanStaging removes the staging directory and whatever it holds, after
// the target acknowledged a cut: everything this run staged was renamed
// into place, so what is left is other processes' leftovers.
func (r *targetRun) cleanStaging(ctx context.Context) {
	if err := r.t.RemoveAll(ctx, StagingDir); err != nil {
		r.log.Warn("clean staging directory", zap.Error(err))
	}
	r.dirsMu.Lock()
	delete(r.dirs, StagingDir)
	r.dirsMu.Unlock()
}

// mkdirs makes sure the directories exist, creating those not known to
// exist all at once (each with its missing parents).
func (r *targetRun) mkdirs(ctx context.Context, dirs []string) error {
	r.dirsMu.Lock()
	need := map[string]bool{}
	for _, d := range dirs {
		if d != "." && d != "" && !r.dirs[d] {
			need[d] = true
		}
	}
	r.dirsMu.Unlock()
	// Only the deepest: MkdirAll creates their parents.
	var leaves []string
	for d := range need {
		leaf := true
		for o := range need {
			if strings.HasPrefix(o, d+"/") {
				leaf = false
				break
			}
		}
		if leaf {
			leaves = append(leaves, d)
		}
	}
	sort.Strings(leaves)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	for _, d := range leaves {
		g.Go(func() error {
			if err := r.t.MkdirAll(gctx, d); err != nil {
				return fmt.Errorf("create directory %s: %w", d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.dirsMu.Lock()
	for _, d := range leaves {
		for p := d; p != "."; p = path.Dir(p) {
			r.dirs[p] = true
		}
	}
	r.dirsMu.Unlock()
	return nil
}

// destDirs returns the directories the files of plan go to.
func destDirs(plan []staged) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, s := range plan {
		if d := path.Dir(s.e.Path); d != "." && !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Uploads to one target hold at most stageBudget bytes of buffers at once,
// and stageSmallBudget more for small files (an SFTP target holds a file
// of up to 512 KiB whole, to send it in one go, and keeps up to 16 write
// requests of 32 KiB in flight for a larger one): many small files go at
// once to hide their round trips, also while large files wait for
// buffers, and a push of large files to many targets stays within a
// bounded memory.
const (
	stageWaiting     = 4 // files waiting per write slot (see stage)
	stageBudget      = 4 << 20
	stageSmallBudget = 1 << 20 // for files of up to stageSmallFile bytes
	stageSmallFile   = 64 << 10
	uploadMaxBytes   = 512 << 10 // buffers an upload holds at most
)

// writeSlot waits for one of the FilesInFlight write slots the target's
// uploads and proof files share, and returns its release.
func (r *targetRun) writeSlot(ctx context.Context) (func(), error) {
	r.slotsOnce.Do(func() { r.slots = make(chan struct{}, r.e.filesInFlight()) })
	select {
	case r.slots <- struct{}{}:
		return func() { <-r.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stage uploads every planned file not yet staged by this run, FilesInFlight
// at a time within stageBudget bytes, verifying each stored object's hash
// once per process before its first upload. The staging directory is
// swept for plan (sweepStaging) so that files a previous push staged whole
// count: before stage is called, or, when swept is not nil, while the
// files upload (a resumable file waits for swept before it is sent).
// uploaded, if not nil, is called once every file is written, while the
// last flushes may still run.
func (r *targetRun) stage(ctx context.Context, plan []staged, total int64, uploaded func(), swept func()) error {
	var todo []staged
	var done int64
	r.mu.Lock()
	for _, s := range plan {
		if r.staged[s.name] {
			done += s.e.Size
			continue
		}
		todo = append(todo, s)
	}
	r.mu.Unlock()
	// Large files and small ones taken in turn (the largest first), so
	// that both kinds are always waiting to be written (see below).
	todo = alternate(todo)
	// A few files are flushed as they are written: the requests go with
	// the writes, where flushing them apart would cost round trips of its
	// own at the end. So are, in a larger stage, the files that start
	// once fewer than FilesInFlight are left to start, and every
	// resumable (large) file: flushed in batches, they would be the last
	// batches, whose round trips follow the last writes (a resumable
	// file's after its rename to its whole name) instead of riding with
	// them.
	inlineAfter := int64(len(todo) - r.e.filesInFlight())
	if len(todo) <= inlineFlushMax {
		inlineAfter = 0
	}
	var started atomic.Int64
	var doneBytes atomic.Int64
	doneBytes.Store(done)
	filesDone := len(plan) - len(todo)
	r.prog("staging", done, total, filesDone, len(plan))
	g, gctx := errgroup.WithContext(ctx)
	// Files wait for buffer space, then for a write slot. Small files
	// have buffer space of their own and take at most three quarters of
	// the slots, and more files wait than are written, taken in turn, so
	// that small files are written while large ones wait for buffers
	// (their round trips overlap the large files' bytes instead of
	// following them) and large ones while many small ones wait.
	g.SetLimit(stageWaiting * r.e.filesInFlight())
	budget := semaphore.NewWeighted(stageBudget)
	smallBudget := semaphore.NewWeighted(stageSmallBudget)
	smallSlots := semaphore.NewWeighted(int64(max(1, r.e.filesInFlight()*3/4)))
	// Files are flushed to the target's disk while the next ones upload.
	flushq, flushed := r.startFlusher(ctx) // not gctx: it ends when Wait returns
	for _, s := range todo {
		if r.e.draining() {
			break // let the files in flight finish, start no more
		}
		g.Go(func() error {
			w := min(max(s.e.Size, 1), uploadMaxBytes)
			b, small := budget, s.e.Size <= stageSmallFile
			if small {
				b = smallBudget
			}
			if err := b.Acquire(gctx, w); err != nil {
				return err
			}
			defer b.Release(w)
			if small {
				// Small files leave some write slots to large ones,
				// which would otherwise wait behind all of them.
				if err := smallSlots.Acquire(gctx, 1); err != nil {
					return err
				}
				defer smallSlots.Release(1)
			}
			release, err := r.writeSlot(gctx)
			if err != nil {
				return err
			}
			defer release()
			if r.e.draining() {
				return nil // drained while waiting for a slot
			}
			if _, delta := r.deltaBase(s); swept != nil && resumable(s) && !delta {
				// (A file staged from ranges is rewritten whole anyway.)
				swept()
				r.mu.Lock()
				whole := r.staged[s.name] // found whole by the sweep
				if whole {
					filesDone++
				}
				fd := filesDone
				r.mu.Unlock()
				if whole {
					r.prog("staging", doneBytes.Add(s.e.Size), total, fd, len(plan))
					return nil
				}
			}
			inline := started.Add(1) > inlineAfter || resumable(s)
			if err := r.upload(gctx, s, inline); err != nil {
				return err
			}
			r.uploaded.Add(1)
			r.mu.Lock()
			r.staged[s.name] = true
			filesDone++
			fd := filesDone
			r.mu.Unlock()
			if flushq != nil {
				flushq <- s
			}
			r.prog("staging", doneBytes.Add(s.e.Size), total, fd, len(plan))
			return nil
		})
	}
	err := g.Wait()
	if err == nil && uploaded != nil && !r.e.draining() {
		uploaded()
	}
	if flushq != nil {
		close(flushq)
		if ferr := <-flushed; err == nil {
			err = ferr
		}
	}
	if err != nil {
		return err
	}
	if r.e.draining() {
		return ErrStopped
	}
	return nil
}

// alternate orders files for a stage: the largest first, taking large
// files (over stageSmallFile) and small ones in turn.
func alternate(todo []staged) []staged {
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].e.Size > todo[j].e.Size })
	cut := sort.Search(len(todo), func(i int) bool { return todo[i].e.Size <= stageSmallFile })
	large, small := todo[:cut], todo[cut:]
	out := make([]staged, 0, len(todo))
	for len(large) > 0 || len(small) > 0 {
		if len(large) > 0 {
			out, large = append(out, large[0]), large[1:]
		}
		if len(small) > 0 {
			out, small = append(out, small[0]), small[1:]
		}
	}
	return out
}

// upload sends one stored object to its staging name. The object's
// content is checked against its SHA-256 once per process, while it is
// read for its first upload (or, if that upload fails, the next one): a
// corrupt object is never renamed into place on any target, and content
// already checked is not read twice. With inline the file is flushed to
// the target's disk as it is written; otherwise flushStaged flushes it.
func (r *targetRun) upload(ctx context.Context, s staged, inline bool) error {
	if r.stageDelta(ctx, s, inline) {
		return nil
	}
	v, hashHere, wait, err := r.e.beginCheck(s.e)
	if err != nil {
		return targets.Permanent(err)
	}
	f, err := r.e.Store.OpenObject(s.e.SHA256)
	if err != nil {
		if hashHere {
			v.end(false, nil)
		}
		if errors.Is(err, fs.ErrNotExist) {
			// Pruned under a push that a newer cut has overtaken: the retry
			// moves on to the latest cut.
			return fmt.Errorf("%s: object pruned from the store: %w", s.e.Path, errSuperseded)
		}
		return fmt.Errorf("%s: %w", s.e.Path, err)
	}
	defer f.Close()
	mf := &meteredFile{ctx: ctx, f: f, size: s.e.Size, limiters: []*rate.Limiter{r.limiter, r.e.uplink}, sent: &r.sent}
	if hashHere {
		mf.hash = sha256.New()
	}
	if ds, ok := r.t.(targets.DeferredSyncer); ok && !inline {
		err = ds.WriteFileNoSync(ctx, writeName(s), mf, s.e.Size) // flushed by flushStaged before the commit
	} else {
		err = r.t.WriteFile(ctx, writeName(s), mf, s.e.Size)
		if err == nil {
			r.mu.Lock()
			r.synced[s.name] = true // (a resumable file keeps its content under its whole name)
			r.mu.Unlock()
		}
	}
	if hashHere {
		// A failed upload checked nothing: the next upload of the object
		// checks it.
		var verdict error
		if err == nil {
			if sum, whole := mf.sum(); !whole {
				verdict = r.e.hashObject(s.e) // read out of order: check it the slow way
			} else if hex.EncodeToString(sum) != s.e.SHA256 {
				verdict = r.e.corrupt(s.e)
			}
		}
		v.end(err == nil && verdict == nil, verdict)
		if verdict != nil {
			return targets.Permanent(verdict)
		}
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", s.e.Path, err)
	}
	if wait != nil {
		// Another upload is checking this object: its verdict counts for
		// this copy too, before anything is renamed into place.
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		if ok, verr := v.result(); verr != nil {
			return targets.Permanent(verr)
		} else if !ok {
			if verr := r.e.hashObject(s.e); verr != nil {
				return targets.Permanent(verr)
			}
		}
	}
	if err := r.finishUpload(ctx, s); err != nil {
		return fmt.Errorf("upload %s: %w", s.e.Path, err)
	}
	return nil
}

// inlineFlushMax is the most files a stage flushes as it writes them;
// of more, only the last FilesInFlight are, and the others in batches on
// sessions of their own (startFlusher), so that the server's flushes do
// not hold up the writes.
const inlineFlushMax = 8

// flushBatches is how many batches of staged files are being flushed at
// once: a batch takes a few round trips however small, so that flushes
// keep up with uploads on a distant difusor.
const flushBatches = 4

// startFlusher starts flushing staged files to the target's disk as they
// arrive on the returned queue, in batches of up to 64, flushBatches
// batches at once, for targets that defer flushes; the second channel
// yields the first error once the queue is closed and every batch is
// flushed. Both are nil for other targets.
func (r *targetRun) startFlusher(ctx context.Context) (chan<- staged, <-chan error) {
	if _, ok := r.t.(targets.DeferredSyncer); !ok {
		return nil, nil
	}
	q := make(chan staged, 1024)
	done := make(chan error, 1)
	go func() {
		var mu sync.Mutex
		var err error
		failed := func() bool {
			mu.Lock()
			defer mu.Unlock()
			return err != nil
		}
		var wg sync.WaitGroup
		slots := make(chan struct{}, flushBatches)
		for s := range q {
			batch := []staged{s}
			for more := true; more && len(batch) < 64; {
				select {
				case s, ok := <-q:
					if !ok {
						more = false
						break
					}
					batch = append(batch, s)
				default:
					more = false
				}
			}
			if failed() || ctx.Err() != nil {
				continue // drain the queue
			}
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				if ferr := r.flushStaged(ctx, batch); ferr != nil {
					mu.Lock()
					if err == nil {
						err = ferr
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		done <- err
	}()
	return q, done
}

// flushStaged makes every staged file of plan durable on the target before
// anything is renamed into place, for targets that defer flushes.
func (r *targetRun) flushStaged(ctx context.Context, plan []staged) error {
	ds, ok := r.t.(targets.DeferredSyncer)
	if !ok {
		return nil
	}
	var names []string
	r.mu.Lock()
	for _, s := range plan {
		if !r.synced[s.name] {
			names = append(names, s.name)
		}
	}
	r.mu.Unlock()
	if err := ds.SyncFiles(ctx, names); err != nil {
		return fmt.Errorf("flush staged files: %w", err)
	}
	r.mu.Lock()
	for _, n := range names {
		r.synced[n] = true
	}
	r.mu.Unlock()
	return nil
}
