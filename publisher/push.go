package publisher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// ErrRollback is wrapped by the error for a target that holds a newer cut
// than the latest local one: prepcast never moves a target backwards.
var ErrRollback = errors.New("target holds a newer or different cut than the latest local one")

// VerifyReadMax is the largest file that verification reads back and
// hashes; larger ones (acta images) are checked by size.
const VerifyReadMax = 4 << 20

// verify checks that the target holds cut c as its ack claims: every file
// present with the manifest's size, and files up to VerifyReadMax read back
// and hashed. Whatever differs (tampered, truncated, deleted) is sent
// again and committed, pointers last. It returns the paths repaired.
func (r *targetRun) verify(ctx context.Context, c *cutRef) ([]string, error) {
	have := map[string]int64{}
	err := r.t.Walk(ctx, "", func(fi targets.FileInfo) error {
		if !fi.Symlink && !strings.HasPrefix(fi.Path, safepath.Reserved+"/") {
			have[fi.Path] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: list target: %w", err)
	}
	var mu sync.Mutex
	var bad []packager.Entry
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	for _, e := range c.m.Entries {
		if sz, ok := have[e.Path]; !ok || sz != e.Size {
			bad = append(bad, e)
			continue
		}
		if e.Size > VerifyReadMax {
			continue
		}
		g.Go(func() error {
			data, err := r.t.ReadFile(gctx, e.Path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("verify %s: %w", e.Path, err)
			}
			sum := sha256.Sum256(data)
			if err != nil || hex.EncodeToString(sum[:]) != e.SHA256 {
				mu.Lock()
				bad = append(bad, e)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(bad) == 0 {
		return nil, nil
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Path < bad[j].Path })
	paths := make([]string, len(bad))
	var need int64
	for i, e := range bad {
		paths[i] = e.Path
		need += e.Size
	}
	r.log.Warn("files on the difusor differ from the cut it acknowledges; sending them again",
		zap.Int64("seq", c.m.Seq), zap.Int("files", len(bad)), zap.Strings("paths", paths[:min(len(paths), 20)]))
	if err := r.prepareStaging(ctx); err != nil {
		return nil, err
	}
	plan := stagingPlan(bad)
	if err := r.stage(ctx, plan, need); err != nil {
		return nil, err
	}
	if err := r.commit(ctx, plan, c.m); err != nil {
		return nil, err
	}
	return paths, nil
}

// errSuperseded marks a failure caused by a newer cut replacing the one
// being pushed; the push moves on to the newer cut.
var errSuperseded = errors.New("superseded by a newer cut")

// ErrStopped is returned for a push that stopped because the engine was
// asked to drain: the files in flight were finished, nothing was
// committed, the target still serves its previous cut.
var ErrStopped = errors.New("push stopped on request after the files in flight")

// ErrNoSpace is wrapped by the error for a target without room for a cut.
var ErrNoSpace = errors.New("not enough free space on the target")

// attemptStats is what one push attempt moved.
type attemptStats struct {
	Files      int   // files staged
	Bytes      int64 // payload bytes read for upload
	Wire       time.Duration
	Reconciled bool // the target's ack was missing or unknown
	AlreadyHad bool // the target already held the cut
	FromSeq    int64
	Deleted    int // retired files deleted
}

// targetRun is the state of pushing to one target during one Push call; it
// survives retries, so files staged and verified before a failure are not
// sent again.
type targetRun struct {
	e       *Engine
	t       targets.Target
	apply   string // package mode: the difusor's apply command
	log     *zap.Logger
	limiter *rate.Limiter

	mu     sync.Mutex
	staged map[string]bool // staging names uploaded and verified by this run
	synced map[string]bool // staging names flushed to the target's disk
	dirsMu sync.Mutex
	dirs   map[string]bool // directories known to exist
	sent   atomic.Int64    // payload bytes read for upload, all attempts
	start  time.Time
	prog   progressFunc
}

type progressFunc func(stage string, done, total int64, files, filesTotal int)

// cutRef is the cut being pushed.
type cutRef struct {
	info     *packager.CutInfo
	m        *packager.Manifest
	mbytes   []byte
	sig      []byte
	sigB64   string
	manifest string // hex SHA-256
}

// pushCut brings the target to cut c: one attempt, no retries.
func (r *targetRun) pushCut(ctx context.Context, c *cutRef) (*Ack, attemptStats, error) {
	var st attemptStats
	ack, err := r.readAck(ctx)
	if err != nil {
		return nil, st, err
	}
	r.e.mirrorRemote(r.log, r.t.Name(), ack)
	if ack != nil && (ack.Seq > c.m.Seq || (ack.Seq == c.m.Seq && ack.Manifest != c.manifest)) {
		return nil, st, targets.Permanent(fmt.Errorf("%w: target acknowledges cut %d (%s, manifest %.12s) but the latest local cut is %d (%s, manifest %.12s); refusing to roll it back (was state_dir replaced? restore it, or move the target's .prepcast/ack.json away to force a full reconcile)",
			ErrRollback, ack.Seq, ack.ID, ack.Manifest, c.m.Seq, c.m.ID, c.manifest))
	}
	now := r.e.now()
	if ack != nil && ack.Seq == c.m.Seq {
		// Already there: only retire what is due.
		st.AlreadyHad, st.FromSeq = true, ack.Seq
		keep, due := r.planRetire(ack.Retired, c.m, nil, now)
		if len(due) == 0 {
			return ack, st, nil
		}
		if err := r.deleteRetired(ctx, due, keep, c.m); err != nil {
			return nil, st, err
		}
		st.Deleted = len(due)
		ack.Retired = keep
		if err := r.writeAck(ctx, ack); err != nil {
			return nil, st, err
		}
		return ack, st, nil
	}

	// Work out what the target lacks.
	var changed []packager.Entry
	var gone []string
	var from *packager.Manifest
	if ack != nil {
		if m, ok := r.e.manifest(ack.Seq, ack.Manifest); ok {
			from = m
		} else {
			r.log.Info("target's acknowledged cut is not in the local store; reconciling", zap.Int64("acked_seq", ack.Seq))
		}
	}
	if from != nil {
		d := packager.ComputeDelta(from, c.m)
		changed, gone, st.FromSeq = d.Changed, d.Deleted, from.Seq
	} else {
		var listed int
		if changed, gone, listed, err = r.reconcile(ctx, c.m); err != nil {
			return nil, st, err
		}
		st.Reconciled = listed > 0 // a first push to an empty root is not worth a mention
	}
	var need int64
	for _, e := range changed {
		need += e.Size
	}
	if err := r.checkSpace(ctx, need); err != nil {
		return nil, st, err
	}
	// Package mode, for a delta from the acknowledged cut or a first push
	// to an empty root; a root holding unknown files is brought up file
	// by file, so that only what differs is sent.
	if r.apply != "" && (from != nil || !st.Reconciled) {
		if r.e.draining() {
			return nil, st, ErrStopped
		}
		var fromSeq int64
		var fromManifest string
		if from != nil {
			fromSeq, fromManifest = from.Seq, ack.Manifest
		}
		na, err := r.pushPackage(ctx, c, fromSeq, fromManifest, len(changed), &st)
		return na, st, err
	}

	// Stage.
	start := time.Now()
	if err := r.prepareStaging(ctx); err != nil {
		return nil, st, err
	}
	plan := stagingPlan(changed)
	sentBefore := r.sent.Load()
	// The destination directories are made while the files upload.
	dirsDone := make(chan error, 1)
	go func() { dirsDone <- r.mkdirs(ctx, destDirs(plan)) }()
	err = r.stage(ctx, plan, need)
	if derr := <-dirsDone; err == nil {
		err = derr
	}
	if err != nil {
		return nil, st, err
	}
	st.Files, st.Bytes, st.Wire = len(plan), r.sent.Load()-sentBefore, time.Since(start)

	// Commit: everything else first, the pointers last, in manifest order.
	if err := r.commit(ctx, plan, c.m); err != nil {
		return nil, st, err
	}

	// Retire what left the manifest; delete what has been retired long enough.
	var prev []Retired
	if ack != nil {
		prev = ack.Retired
	}
	// The ack still lists what is deleted right after it: if the deletion
	// is interrupted, the next push deletes those files again.
	keep, due := r.planRetire(prev, c.m, gone, now)
	na := &Ack{Format: AckFormat, Seq: c.m.Seq, ID: c.m.ID, Manifest: c.manifest, Signature: c.sigB64,
		Time: r.e.now().UTC().Truncate(time.Millisecond), Publisher: r.e.Publisher,
		Retired: sortedRetired(append(append([]Retired(nil), keep...), due...))}
	if err := r.writeAck(ctx, na); err != nil {
		return nil, st, err
	}
	// Housekeeping after the target serves the new cut.
	if err := r.deleteRetired(ctx, due, keep, c.m); err != nil {
		r.log.Warn("delete retired files (tried again at the next push)", zap.Error(err))
	} else {
		st.Deleted = len(due)
	}
	if len(plan) > 0 {
		r.cleanStaging(ctx)
	}
	return na, st, nil
}

// readAck returns the target's ack, nil if it has none or it is unreadable
// garbage (the target is then reconciled).
func (r *targetRun) readAck(ctx context.Context) (*Ack, error) {
	data, err := r.t.ReadFile(ctx, AckPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ack: %w", err)
	}
	a, err := ParseAck(data)
	if err != nil {
		r.log.Warn("target's ack is unreadable; reconciling", zap.Error(err))
		return nil, nil
	}
	return a, nil
}

// reconcile lists the target and returns the entries it lacks or holds
// with another size, and the files it has that the cut does not.
func (r *targetRun) reconcile(ctx context.Context, m *packager.Manifest) (changed []packager.Entry, gone []string, listed int, err error) {
	have := map[string]int64{}
	err = r.t.Walk(ctx, "", func(fi targets.FileInfo) error {
		if fi.Path == safepath.Reserved || strings.HasPrefix(fi.Path, safepath.Reserved+"/") {
			return nil
		}
		if fi.Symlink {
			have[fi.Path] = -1 // replaced by the real file
			return nil
		}
		have[fi.Path] = fi.Size
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reconcile: list target: %w", err)
	}
	listed = len(have)
	for _, e := range m.Entries {
		if sz, ok := have[e.Path]; !ok || sz != e.Size || m.IsPointer(e.Path) {
			changed = append(changed, e)
		}
		delete(have, e.Path)
	}
	// Files the cut does not have are left alone: without an ack prepcast
	// cannot tell its own old files from the difusor's.
	r.log.Info("reconciled target by listing", zap.Int("listed", listed), zap.Int("differing", len(changed)), zap.Int("not_in_cut_left_in_place", len(have)))
	return changed, nil, listed, nil
}

// staged is one file to upload: the entry and its staging name.
type staged struct {
	e    packager.Entry
	name string // below StagingDir
}

// stagingPlan names a staging file for every entry: the content hash, so
// that a retry finds what it already sent, with a suffix for content that
// appears at several paths.
func stagingPlan(changed []packager.Entry) []staged {
	seen := map[string]int{}
	plan := make([]staged, 0, len(changed))
	for _, e := range changed {
		plan = append(plan, stageAs(seen, e))
	}
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

// prepareStaging creates the staging directory. Files an interrupted
// earlier process left there are never trusted (only files this run
// uploaded and verified are, see staged) and are overwritten or removed
// with the whole directory once a cut is acknowledged (cleanStaging), off
// the path to the new cut.
func (r *targetRun) prepareStaging(ctx context.Context) error {
	return r.mkdirs(ctx, []string{StagingDir})
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

// stage uploads every planned file not yet staged by this run, FilesInFlight
// at a time, verifying each stored object's hash once per process before
// its first upload.
func (r *targetRun) stage(ctx context.Context, plan []staged, total int64) error {
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
	// Large files first, so that they overlap with the many small ones.
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].e.Size > todo[j].e.Size })
	var doneBytes atomic.Int64
	doneBytes.Store(done)
	filesDone := len(plan) - len(todo)
	r.prog("staging", done, total, filesDone, len(plan))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	// Files are flushed to the target's disk while the next ones upload.
	flushq, flushed := r.startFlusher(ctx) // not gctx: it ends when Wait returns
	for _, s := range todo {
		if r.e.draining() {
			break // let the files in flight finish, start no more
		}
		g.Go(func() error {
			if r.e.draining() {
				return nil // drained while waiting for a slot
			}
			if err := r.upload(gctx, s); err != nil {
				return err
			}
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

// upload sends one stored object to its staging name. The object's
// content is checked against its SHA-256 once per process, while it is
// read for its first upload (or, if that upload fails, the next one): a
// corrupt object is never renamed into place on any target, and content
// already checked is not read twice.
func (r *targetRun) upload(ctx context.Context, s staged) error {
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
	if ds, ok := r.t.(targets.DeferredSyncer); ok {
		err = ds.WriteFileNoSync(ctx, s.name, mf, s.e.Size) // flushed by flushStaged before the commit
	} else {
		err = r.t.WriteFile(ctx, s.name, mf, s.e.Size)
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
	return nil
}

// startFlusher starts flushing staged files to the target's disk as they
// arrive on the returned queue, in batches, for targets that defer
// flushes; the second channel yields its error once the queue is closed
// and drained. Both are nil for other targets.
func (r *targetRun) startFlusher(ctx context.Context) (chan<- staged, <-chan error) {
	if _, ok := r.t.(targets.DeferredSyncer); !ok {
		return nil, nil
	}
	q := make(chan staged, 1024)
	done := make(chan error, 1)
	go func() {
		var err error
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
			if err == nil && ctx.Err() == nil {
				err = r.flushStaged(ctx, batch)
			}
		}
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

// commit renames staged files into place: all non-pointer files (several at
// once), then the pointer files one by one in manifest order.
func (r *targetRun) commit(ctx context.Context, plan []staged, m *packager.Manifest) error {
	if err := r.flushStaged(ctx, plan); err != nil {
		return err
	}
	var ptrs, rest []staged
	for _, s := range plan {
		if m.IsPointer(s.e.Path) {
			ptrs = append(ptrs, s)
		} else {
			rest = append(rest, s)
		}
	}
	sort.Slice(ptrs, func(i, j int) bool {
		return indexOf(m.Pointers, ptrs[i].e.Path) < indexOf(m.Pointers, ptrs[j].e.Path)
	})
	// The destination directories, created while the files uploaded.
	if err := r.mkdirs(ctx, destDirs(plan)); err != nil {
		return err
	}
	r.prog("committing", 0, 0, 0, len(plan))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * r.e.filesInFlight()) // renames carry no data: many at once hide the round trips
	for _, s := range rest {
		g.Go(func() error { return r.rename(gctx, s) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, s := range ptrs {
		if err := r.rename(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (r *targetRun) rename(ctx context.Context, s staged) error {
	err := r.t.Rename(ctx, s.name, s.e.Path)
	if errors.Is(err, fs.ErrNotExist) {
		// The staged file is gone: a rename whose reply was lost with the
		// connection, or a cleaned staging directory. Send it again.
		r.forget(s.name)
		if err = r.upload(ctx, s); err == nil {
			if err = r.flushStaged(ctx, []staged{s}); err == nil {
				err = r.t.Rename(ctx, s.name, s.e.Path)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("commit %s: %w", s.e.Path, err)
	}
	r.forget(s.name) // consumed: a later attempt must upload again
	return nil
}

func (r *targetRun) forget(name string) {
	r.mu.Lock()
	delete(r.staged, name)
	delete(r.synced, name)
	r.mu.Unlock()
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s)
}

// planRetire merges the files that left the manifest into the retired
// list and splits it: keep (still inside the retention window) and due
// (to delete now). A path that is a file of m again is dropped.
func (r *targetRun) planRetire(prev []Retired, m *packager.Manifest, gone []string, now time.Time) (keep, due []Retired) {
	byPath := map[string]Retired{}
	for _, x := range prev {
		byPath[x.Path] = x
	}
	for _, p := range gone {
		if _, ok := byPath[p]; !ok {
			byPath[p] = Retired{Path: p, Since: now.UTC().Truncate(time.Second)}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		x := byPath[p]
		if _, ok := m.Lookup(p); ok {
			continue // back in the cut
		}
		if now.Sub(x.Since) < r.e.RetentionWindow {
			keep = append(keep, x)
		} else {
			due = append(due, x)
		}
	}
	return keep, due
}

func sortedRetired(rs []Retired) []Retired {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Path < rs[j].Path })
	return rs
}

// deleteRetired deletes the due files from the target, several at once,
// then the directories they leave empty. A file already gone is fine.
func (r *targetRun) deleteRetired(ctx context.Context, due, keep []Retired, m *packager.Manifest) error {
	if len(due) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	paths := make([]string, len(due))
	for i, x := range due {
		paths[i] = x.Path
		g.Go(func() error {
			if err := r.t.Remove(gctx, x.Path); err != nil {
				return fmt.Errorf("delete retired %s: %w", x.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.removeEmptyDirs(ctx, paths, m, keep)
	return nil
}

// removeEmptyDirs removes the directories that held deleted files and hold
// nothing prepcast knows of any more (no file of m, no file still retired),
// deepest first. It is best effort: a directory that still holds something
// else (a difusor's own file) stays.
func (r *targetRun) removeEmptyDirs(ctx context.Context, deleted []string, m *packager.Manifest, keep []Retired) {
	used := map[string]bool{}
	mark := func(p string) {
		for d := path.Dir(p); d != "." && !used[d]; d = path.Dir(d) {
			used[d] = true
		}
	}
	for _, e := range m.Entries {
		mark(e.Path)
	}
	for _, x := range keep {
		mark(x.Path)
	}
	cand := map[string]bool{}
	for _, p := range deleted {
		for d := path.Dir(p); d != "." && !used[d]; d = path.Dir(d) {
			cand[d] = true
		}
	}
	dirs := make([]string, 0, len(cand))
	for d := range cand {
		dirs = append(dirs, d)
	}
	// Deepest first, so that a parent is empty by the time it is removed.
	sort.Slice(dirs, func(i, j int) bool {
		if a, b := strings.Count(dirs[i], "/"), strings.Count(dirs[j], "/"); a != b {
			return a > b
		}
		return dirs[i] < dirs[j]
	})
	// One depth at a time, the directories of a depth all at once.
	for len(dirs) > 0 {
		depth := strings.Count(dirs[0], "/")
		n := 0
		for n < len(dirs) && strings.Count(dirs[n], "/") == depth {
			n++
		}
		var g errgroup.Group
		g.SetLimit(r.e.filesInFlight())
		for _, d := range dirs[:n] {
			g.Go(func() error {
				if err := r.t.Remove(ctx, d); err != nil {
					r.log.Debug("retired directory not removed", zap.String("dir", d), zap.Error(err))
					return nil
				}
				r.dirsMu.Lock()
				delete(r.dirs, d)
				r.dirsMu.Unlock()
				return nil
			})
		}
		_ = g.Wait()
		dirs = dirs[n:]
	}
}

// writeAck writes the ack atomically: staged, then renamed over the old one.
func (r *targetRun) writeAck(ctx context.Context, a *Ack) error {
	if err := r.mkdirs(ctx, []string{StagingDir}); err != nil {
		return err
	}
	data := a.Encode()
	tmp := StagingDir + "/ack.json"
	if err := r.t.WriteFile(ctx, tmp, strings.NewReader(string(data)), int64(len(data))); err != nil {
		return fmt.Errorf("write ack: %w", err)
	}
	if err := r.t.Rename(ctx, tmp, AckPath); err != nil {
		return fmt.Errorf("write ack: %w", err)
	}
	return nil
}

// checkSpace refuses a cut the target has no room for.
func (r *targetRun) checkSpace(ctx context.Context, need int64) error {
	sr, ok := r.t.(targets.SpaceReporter)
	if !ok || need == 0 {
		return nil
	}
	free, known, err := sr.FreeSpace(ctx)
	if err != nil || !known {
		return nil // cannot tell; a full disk fails the upload clearly
	}
	const margin = 16 << 20
	if free < need+margin {
		return fmt.Errorf("%w: %d MB free, the cut needs %d MB; ask the difusor to free space under its root", ErrNoSpace, free>>20, (need+margin)>>20)
	}
	return nil
}

// objectCheck is the state of one stored object's check in this process.
type objectCheck struct {
	mu      sync.Mutex
	running chan struct{} // closed when the check in progress ends; nil if none
	ok      bool          // checked and found intact
	err     error         // checked and found corrupt
}

// beginCheck tells an upload of ent whether to hash the object as it reads
// it (hashHere: no other upload is checking it and it is not checked yet),
// or to wait for another upload's verdict (wait) before it may succeed. An
// object already found corrupt returns that error.
func (e *Engine) beginCheck(ent packager.Entry) (v *objectCheck, hashHere bool, wait <-chan struct{}, err error) {
	e.verifyMu.Lock()
	v, ok := e.verified[ent.SHA256]
	if !ok {
		v = &objectCheck{}
		e.verified[ent.SHA256] = v
	}
	e.verifyMu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.err != nil:
		return v, false, nil, v.err
	case v.ok:
		return v, false, nil, nil
	case v.running != nil:
		return v, false, v.running, nil
	}
	v.running = make(chan struct{})
	return v, true, nil, nil
}

// end records the outcome of the check beginCheck handed out: ok means
// intact, verdict set means corrupt, neither means not checked.
func (v *objectCheck) end(ok bool, verdict error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ok, v.err = ok, verdict
	close(v.running)
	v.running = nil
}

// result reports the object's state after a check ended.
func (v *objectCheck) result() (ok bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ok, v.err
}

// hashObject checks a stored object by reading it whole, and records the
// outcome.
func (e *Engine) hashObject(ent packager.Entry) error {
	f, err := e.Store.OpenObject(ent.SHA256)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%s: read stored object: %w", ent.Path, err)
	}
	if n != ent.Size || hex.EncodeToString(h.Sum(nil)) != ent.SHA256 {
		return e.corrupt(ent)
	}
	e.verifyMu.Lock()
	v := e.verified[ent.SHA256]
	e.verifyMu.Unlock()
	if v != nil {
		v.mu.Lock()
		if v.running == nil {
			v.ok = true
		}
		v.mu.Unlock()
	}
	return nil
}

// corrupt is the error for a stored object whose content does not match
// its name.
func (e *Engine) corrupt(ent packager.Entry) error {
	return fmt.Errorf("%s: %w; not pushed (run prepcast cut --rehash to store it again)", ent.Path, packager.ErrCorruptObject)
}
