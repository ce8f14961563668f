package publisher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// ErrRollback is wrapped by the error for a target that holds a newer cut
// than the latest local one: prepcast never moves a target backwards.
var ErrRollback = errors.New("target holds a newer or different cut than the latest local one")

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
	Files      int           // files of the cut staged (sent now or by an earlier attempt)
	Uploaded   int           // files this attempt sent
	Bytes      int64         // payload bytes read for upload by this attempt
	Wire       time.Duration // time this attempt spent staging, failed or not
	Reconciled bool          // the target's ack was missing or unknown
	AlreadyHad bool          // the target already held the cut
	FromSeq    int64
	Deleted    int // retired files deleted
	// Range deltas of this attempt (deltastage.go).
	DeltaFiles      int
	Literal, Copied int64
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
	// uploaded counts the files sent, all attempts.
	uploaded atomic.Int64
	start    time.Time
	prog     progressFunc
	// verified is how many files the last verification checked.
	verified int
	// slots holds one token per file being written (uploads and the
	// proof's files alike): FilesInFlight at most (see writeSlot).
	slotsOnce sync.Once
	slots     chan struct{}

	// Range deltas (deltastage.go): the acknowledged versions of the
	// files, by path, while an attempt may stage from them (under mu).
	deltaOld        map[string]packager.Entry
	deltaFiles      atomic.Int64
	literal, copied atomic.Int64
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
	free := r.freeSpace(ctx)
	// What file mode needs before it stages is asked while the ack is
	// read: the server's clock, the staging directory made and listed.
	clock := r.readClock(ctx)
	early := r.prepareEarly(ctx)
	defer func() {
		// Nothing of an attempt outlives it.
		if clock != nil {
			_ = clock()
		}
		early.wait()
	}()
	ack, err := r.readAckMax(ctx, AckMax(len(c.m.Entries)))
	if err != nil {
		return nil, st, err
	}
	r.e.mirrorRemote(r.log, r.t.Name(), ack)
	if ack != nil && (ack.Seq > c.m.Seq || (ack.Seq == c.m.Seq && ack.Manifest != c.manifest)) {
		return nil, st, targets.Permanent(fmt.Errorf("%w: target acknowledges cut %d (%s, manifest %.12s) but the latest local cut is %d (%s, manifest %.12s); refusing to roll it back; was state_dir replaced or restored from an old backup? Restore the latest state_dir (its store holds the newer cuts): prepcast never moves a difusor back to an older cut",
			ErrRollback, ack.Seq, safe(ack.ID), ack.Manifest, c.m.Seq, c.m.ID, c.manifest))
	}
	now := r.e.now()
	if ack != nil && ack.Seq == c.m.Seq {
		// Already there: only retire what is due.
		st.AlreadyHad, st.FromSeq = true, ack.Seq
		var pre *proofReads
		if early != nil {
			pre = early.proof
		}
		if err := r.publishProof(ctx, c, ack.Seq, pre); err != nil { // proof.go
			return nil, st, err
		}
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
	if err := checkSpace(free, need); err != nil {
		return nil, st, err
	}
	// The cut's public proof goes up before anything of it is committed,
	// in both modes (proof.go); in package mode, by the difusor's apply
	// if it says it does.
	var acked int64
	if ack != nil {
		acked = ack.Seq
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
		na, err := r.pushPackage(ctx, c, fromSeq, fromManifest, acked, len(changed), &st)
		return na, st, err
	}
	// File mode. The proof goes up while the files stage; the commit
	// waits for it. It never outlives this attempt.
	if early == nil {
		early = r.prepareEarly(ctx)
	}
	proofCtx, stopProof := context.WithCancel(ctx)
	pruneProof := func() {}
	proofErr := background.Go(func() error {
		prune, err := r.placeProof(proofCtx, c, acked, early.proof)
		pruneProof = prune
		return err
	})
	defer func() {
		stopProof()
		_ = proofErr()
	}()

	// Stage: the staging directory made and listed (early, or now for a
	// package target brought up file by file) is swept while the server's
	// clock is read for range deltas.
	start := time.Now()
	plan := stagingPlan(changed)
	stopDelta := func() {}
	deltaErr := background.Go(func() (err error) {
		if from != nil {
			stopDelta, err = r.useDeltaFrom(ctx, from, clock)
		}
		return err
	})
	err = early.prepared()
	// Only resumable files wait for the sweep (stage): it tells which are
	// already there whole.
	swept := background.Go(func() int { return r.sweepStaging(ctx, plan, early.listed) })
	defer swept()
	if derr := deltaErr(); err == nil {
		err = derr
	}
	defer stopDelta()
	if err != nil {
		return nil, st, err
	}
	sentBefore := r.sent.Load()
	deltaBefore := r.deltaMark()
	// The destination directories are made while the files upload.
	dirsErr := background.Go(func() error { return r.mkdirs(ctx, destDirs(plan)) })
	// Retire what left the manifest; delete what has been retired long
	// enough. The ack still lists what is deleted right after it: if the
	// deletion is interrupted, the next push deletes those files again.
	var prev []Retired
	if ack != nil {
		prev = ack.Retired
	}
	keep, due := r.planRetire(prev, c.m, gone, now)
	na := &Ack{Format: AckFormat, Seq: c.m.Seq, ID: c.m.ID, Manifest: c.manifest, Signature: c.sigB64,
		Publisher: r.e.Publisher, Retired: sortedRetired(append(append([]Retired(nil), keep...), due...))}
	// The new ack is staged once every file of the cut is written (so none
	// is newer than it: see useDeltaFrom), while the last flushes and the
	// commit run, and renamed into place after the pointers.
	ackStaged := func() error { return errors.New("ack not staged") }
	stageAck := func() {
		na.Time = r.e.now().UTC().Truncate(time.Millisecond)
		ackStaged = background.Go(func() error { return r.stageAck(ctx, na) })
	}
	defer func() { _ = ackStaged() }()
	uploadedBefore := r.uploaded.Load()
	err = r.stage(ctx, plan, need, stageAck, func() { swept() })
	left := swept() // what the commit leaves in the staging directory
	if derr := dirsErr(); err == nil {
		err = derr
	}
	st.Bytes, st.Wire, st.Uploaded = r.sent.Load()-sentBefore, time.Since(start), int(r.uploaded.Load()-uploadedBefore)
	if err != nil {
		return nil, st, err
	}
	st.Files = len(plan)
	st.DeltaFiles, st.Literal, st.Copied = r.deltaSince(deltaBefore)

	// Commit: the files, then, once the proof is in place, the pointers,
	// in manifest order.
	if err := r.commit(ctx, plan, c.m, proofErr); err != nil {
		return nil, st, err
	}
	if err := ackStaged(); err != nil {
		return nil, st, err
	}
	if err := r.placeAck(ctx); err != nil {
		return nil, st, err
	}
	// Housekeeping after the target serves the new cut.
	pruneProof()
	if err := r.deleteRetired(ctx, due, keep, c.m); err != nil {
		r.log.Warn("delete retired files (tried again at the next push)", zap.Error(err))
	} else {
		st.Deleted = len(due)
	}
	if len(plan) > 0 {
		r.tidyStaging(ctx, left)
	}
	return na, st, nil
}
