package publisher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/internal/rdelta"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// Range deltas in file mode: a changed file whose previous version the
// target serves (by its acknowledged manifest) is staged by copying the
// unchanged ranges from the served file on the server (copy-data) and
// sending only the changed bytes. The served file is only read; the staged
// file is checked like any other before it is renamed into place, and any
// failure sends the file whole.

const (
	// DeltaMinSize is the smallest file staged from ranges of its previous
	// version; smaller files cost about as much to send whole.
	DeltaMinSize = 64 << 10
	// deltaMaxSize bounds the files planned: both versions are read into
	// memory to plan.
	deltaMaxSize = 256 << 20
	// deltaProbeLen is how many bytes of the served file are read to tell
	// its version before copying from it.
	deltaProbeLen = 64
)

// deltaState is the Engine's share of range deltas: plans by pair of
// versions, computed once per process however many targets need them.
type deltaState struct {
	once  sync.Once
	plans *rdelta.Cache
	// planTime is the CPU-bound time spent planning, in nanoseconds.
	planTime atomic.Int64
}

func (e *Engine) deltaPlans() *rdelta.Cache {
	e.delta.once.Do(func() { e.delta.plans = rdelta.NewCache(0) })
	return e.delta.plans
}

// DeltaStats reports what range planning cost this Engine: plans computed
// (each pair of versions once) and the time spent computing them.
func (e *Engine) DeltaStats() (plans int, took time.Duration) {
	return e.deltaPlans().Computed(), time.Duration(e.delta.planTime.Load())
}

// deltaPlan is a plan and the probe bytes of the old version.
type deltaPlan struct {
	*rdelta.Plan
	probe []byte
}

// readClock starts waiting, in the background, until the server's clock
// has passed the acknowledgement's modification time (see useDeltaFrom),
// on a target that can stage from ranges, so that the wait overlaps the
// reading of the ack. The returned function yields its outcome; it is nil
// when range deltas do not apply (package mode sends deltas its own way;
// staged files must be flushed by name before the commit).
func (r *targetRun) readClock(ctx context.Context) func() error {
	rc, copies := r.t.(targets.RangeCopier)
	_, flushes := r.t.(targets.DeferredSyncer)
	if r.apply != "" || !copies || !flushes {
		return nil
	}
	return background.Go(func() error {
		if can, err := rc.CanCopyRanges(ctx); err != nil || !can {
			return err
		}
		return rc.WaitPast(ctx, AckPath, StagingDir+".clock")
	})
}

// useDeltaFrom makes the uploads of this push attempt stage files from
// ranges of their versions in from, the manifest the target acknowledges;
// the returned function ends that. Before anything is staged it waits, if
// need be, until the server's clock has passed the acknowledgement's
// modification time, so that whatever this attempt stages (and an
// interrupted commit may rename into place) is newer than the ack: a
// later attempt then never copies ranges from it (see stageDelta). clock
// is readClock's wait, started with the attempt; if it failed (it ran
// before the ack was known to exist) the wait runs again.
func (r *targetRun) useDeltaFrom(ctx context.Context, from *packager.Manifest, clock func() error) (func(), error) {
	nop := func() {}
	if from == nil || clock == nil {
		return nop, nil
	}
	rc := r.t.(targets.RangeCopier) // readClock checked the target's kind
	if can, err := rc.CanCopyRanges(ctx); err != nil || !can {
		return nop, err
	}
	// Even with deltas off for this push: a later one may use them, and
	// must not mistake what this one staged for the acknowledged files.
	if clock() != nil {
		if err := rc.WaitPast(ctx, AckPath, StagingDir+".clock"); err != nil {
			return nop, fmt.Errorf("read the server's clock: %w", err)
		}
	}
	if r.e.NoDelta {
		return nop, nil
	}
	old := make(map[string]packager.Entry)
	for _, e := range from.Entries {
		if e.Size >= DeltaMinSize && e.Size <= deltaMaxSize {
			old[e.Path] = e
		}
	}
	r.mu.Lock()
	r.deltaOld = old
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.deltaOld = nil
		r.mu.Unlock()
	}, nil
}

// deltaBase returns the acknowledged version of s's file that s may be
// staged from, if any.
func (r *targetRun) deltaBase(s staged) (packager.Entry, bool) {
	r.mu.Lock()
	prev, ok := r.deltaOld[s.e.Path]
	r.mu.Unlock()
	return prev, ok && s.e.Size >= DeltaMinSize && s.e.Size <= deltaMaxSize && prev.SHA256 != s.e.SHA256
}

// stageDelta tries to stage s from ranges of the version of s.e.Path the
// target serves. It returns true when s is staged; false (nothing to do,
// or any failure, logged) means s must be sent whole. inline is upload's.
func (r *targetRun) stageDelta(ctx context.Context, s staged, inline bool) bool {
	prev, ok := r.deltaBase(s)
	if !ok {
		return false
	}
	rc := r.t.(targets.RangeCopier)
	if can, err := rc.CanCopyRanges(ctx); err != nil || !can {
		return false
	}
	p, err := r.e.plan(prev, s.e)
	if err != nil {
		r.log.Debug("no range plan; sending the file whole", zap.String("path", s.e.Path), zap.Error(err))
		return false
	}
	if p.Copied < p.NewSize/8 {
		return false // little to reuse
	}
	f, err := r.e.Store.OpenObject(s.e.SHA256)
	if err != nil {
		return false
	}
	defer f.Close()
	// The served file must be the acknowledged version: its size, a few
	// bytes where the versions differ, and not newer than the ack (a file
	// renamed into place by a later commit that was interrupted before its
	// ack, or edited on the server, is newer: see useDeltaFrom).
	rp := &targets.RangePlan{SrcSize: p.OldSize, Probe: p.Probe, ProbeBytes: p.probe, SrcOlderThan: AckPath,
		Size: p.NewSize, Ops: make([]targets.RangeOp, len(p.Ops)), Flush: inline}
	for i, op := range p.Ops {
		rp.Ops[i] = targets.RangeOp{Copy: op.Copy, Src: op.Src, Dst: op.Dst, Len: op.Len}
	}
	start := time.Now()
	var sent atomic.Int64
	lit := &meteredFile{ctx: ctx, f: f, size: s.e.Size, limiters: []*rate.Limiter{r.limiter, r.e.uplink}, sent: &sent}
	err = rc.WriteFileRanges(ctx, s.name, prev.Path, rp, lit)
	r.sent.Add(sent.Load())
	if err != nil {
		lvl := r.log.Info
		if errors.Is(err, targets.ErrSourceChanged) {
			lvl = r.log.Warn
		}
		lvl("staging from the served file failed; sending the file whole", zap.String("path", s.e.Path), zap.Error(err))
		return false
	}
	if inline {
		r.mu.Lock()
		r.synced[s.name] = true
		r.mu.Unlock()
	}
	r.literal.Add(p.Literal)
	r.copied.Add(p.Copied)
	r.deltaFiles.Add(1)
	r.log.Debug("staged from ranges of the served file", zap.String("path", s.e.Path), zap.Int("ranges", len(p.Ops)),
		zap.Int64("literal", p.Literal), zap.Int64("copied", p.Copied), zap.Duration("took", time.Since(start)))
	return true
}

// plan returns the plan from prev's content to e's, computing it once per
// pair of versions. Both stored objects are read and checked against their
// SHA-256 while planning; e's object then counts as checked for uploads.
func (e *Engine) plan(prev, ent packager.Entry) (*deltaPlan, error) {
	var probe []byte
	p, err := e.deltaPlans().Get(rdelta.Key{Old: prev.SHA256, New: ent.SHA256}, func() (*rdelta.Plan, error) {
		oldData, err := e.readObject(prev)
		if err != nil {
			return nil, err
		}
		newData, err := e.readObject(ent)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		p := rdelta.Compute(oldData, newData, rdelta.Options{})
		e.delta.planTime.Add(int64(time.Since(start)))
		e.markChecked(ent.SHA256)
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	if p.Probe >= 0 {
		// The probe bytes are a few bytes of the old object: read them
		// again rather than keep the old version in memory.
		f, err := e.Store.OpenObject(prev.SHA256)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		probe = make([]byte, min(int64(deltaProbeLen), p.OldSize-p.Probe))
		if _, err := f.ReadAt(probe, p.Probe); err != nil {
			return nil, fmt.Errorf("read stored object %.12s: %w", prev.SHA256, err)
		}
	}
	return &deltaPlan{Plan: p, probe: probe}, nil
}

// readObject reads a stored object whole and checks its SHA-256.
func (e *Engine) readObject(ent packager.Entry) ([]byte, error) {
	f, err := e.Store.OpenObject(ent.SHA256)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, ent.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read stored object %.12s: %w", ent.SHA256, err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != ent.Size || hex.EncodeToString(sum[:]) != ent.SHA256 {
		return nil, e.corrupt(ent)
	}
	return data, nil
}

// markChecked records that the stored object sha was read whole and
// matched its hash, unless a check of it is under way.
func (e *Engine) markChecked(sha string) {
	e.verifyMu.Lock()
	v, ok := e.verified[sha]
	if !ok {
		v = &objectCheck{}
		e.verified[sha] = v
	}
	e.verifyMu.Unlock()
	v.mu.Lock()
	if v.running == nil && v.err == nil {
		v.ok = true
	}
	v.mu.Unlock()
}

// deltaMark is a snapshot of the run's range-delta counters.
type deltaMark struct{ files, literal, copied int64 }

func (r *targetRun) deltaMark() deltaMark {
	return deltaMark{r.deltaFiles.Load(), r.literal.Load(), r.copied.Load()}
}

// deltaSince returns the files, literal and copied bytes staged from
// ranges since m.
func (r *targetRun) deltaSince(m deltaMark) (files int, literal, copied int64) {
	return int(r.deltaFiles.Load() - m.files), r.literal.Load() - m.literal, r.copied.Load() - m.copied
}

// recordDelta adds an attempt's range-delta bytes to the audit history
// (the metrics' totals).
func (e *Engine) recordDelta(id int64, st attemptStats) {
	if e.DB == nil || id == 0 || st.DeltaFiles == 0 {
		return
	}
	if err := e.DB.RecordAttemptDelta(context.Background(), id, st.Literal, st.Copied); err != nil {
		e.Log.Warn("record attempt", zap.Error(err))
	}
}
