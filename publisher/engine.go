package publisher

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/targets"
)

// RetryPolicy says how often and how patiently a failing target is retried
// within one push.
type RetryPolicy struct {
	Attempts int           // attempts per cut, at least 1
	Base     time.Duration // first backoff
	Max      time.Duration // backoff ceiling
}

// TargetSpec is one target to push to and its own bandwidth limit.
type TargetSpec struct {
	Target targets.Target
	Limit  int64 // bytes per second; 0 = unlimited
	// Apply, when set, is the command that runs "prepcast apply" on the
	// difusor (package mode): deltas from an acknowledged cut, and the
	// first push to an empty root, are streamed to it as one package
	// instead of file by file. The Target must implement
	// targets.Commander.
	Apply string
}

// Engine pushes the latest cut of a store to many targets at once.
// Configure the exported fields, then call [Engine.Push]; an Engine may be
// used for several pushes but not for two at once.
type Engine struct {
	Store           *packager.Store
	PublicKey       ed25519.PublicKey // cuts whose signature does not verify are never pushed
	DB              *state.DB         // local mirror of acks, audit history, live progress; may be nil
	Log             *zap.Logger
	Publisher       string        // written into acks (host name)
	Uplink          int64         // bytes per second across all targets; 0 = unlimited
	TargetsInFlight int           // targets pushed at once (default 32)
	FilesInFlight   int           // files in flight per target (default 64, within stageBudget bytes)
	Retry           RetryPolicy   // default 5 attempts, 1 s, 30 s
	CycleTimeout    time.Duration // deadline for one target's push (default 10 min)
	RetentionWindow time.Duration // retired files are deleted from targets after this (default 30 min)
	// StaleStaging is how old a staging file that the current push does
	// not use must be before the push removes it (default 1 h): younger
	// ones may belong to a push in progress elsewhere.
	StaleStaging time.Duration
	Now          func() time.Time
	// OnProgress, if set, is called as a target's push moves on. It must be
	// quick and safe for concurrent use.
	OnProgress func(Progress)
	// Verify makes every push check, once the target holds the latest cut,
	// that its files really are the cut's (every file listed, read back and
	// hashed) and send again whatever differs. Result.Repaired lists what
	// was found and fixed.
	Verify bool
	// Rotation is the rotating verification done by every push that leaves
	// a target on the latest cut (when Verify is not set): a slice of the
	// cut's files read back and hashed, whatever differs sent again. The
	// zero value checks nothing.
	Rotation VerifyBudget
	// Drain, when closed, asks every push to stop gracefully: uploads in
	// flight finish, no new upload, commit or retry starts, and the push
	// returns ErrStopped. Every target keeps serving a whole cut. Cancel
	// the context instead to stop at once.
	Drain <-chan struct{}
	// NoDelta turns off staging changed files from ranges of the version a
	// target serves (deltastage.go): every changed file is sent whole.
	NoDelta bool

	initOnce sync.Once
	uplink   *rate.Limiter
	verifyMu sync.Mutex
	verified map[string]*objectCheck // stored objects checked (or being checked) in this process
	progMu   sync.Mutex
	progLast map[string]time.Time

	cacheMu   sync.Mutex
	latestRef *cutRef
	manifests map[string]*packager.Manifest // "seq sha" -> manifest, nil if not in the store

	pkgMu sync.Mutex
	pkgs  map[pkgKey]*pkgBuild // packages by origin, cut and form
	// wholeFiles names targets whose root failed a delta's base check in
	// this process: they get whole files from then on.
	wholeFiles map[string]bool

	delta deltaState // range plans (deltastage.go)
}

// defaultFilesInFlight is Engine.FilesInFlight's default.
const defaultFilesInFlight = 64

// Progress is a snapshot of one target's push.
type Progress struct {
	Target      string
	Seq         int64
	CutID       string
	State       string // connecting, staging, committing, retrying, ok, failing
	BytesDone   int64
	BytesTotal  int64
	FilesDone   int
	FilesTotal  int
	Attempt     int
	RetryAt     time.Time
	LastError   string
	BytesPerSec float64
}

// Result is the outcome of pushing to one target.
type Result struct {
	Target   string
	Ack      *Ack // what the target acknowledges at the end; nil if unknown
	Err      error
	Attempts int   // attempts made, the first included
	Bytes    int64 // payload bytes sent, all attempts
	// Files counts the files each acknowledged cut brought, once per cut
	// however many attempts it took.
	Files int
	// Wire is the time spent staging, all attempts: Bytes/Wire is the rate
	// the uploads ran at.
	Wire     time.Duration
	Duration time.Duration
	// Strategy says how the target adapted to its server when it picked a
	// fallback (see targets.Adapter); empty otherwise.
	Strategy   string
	Cuts       []int64  // cuts the target acknowledged during this push
	Reconciled bool     // the target was reconciled by listing
	Repaired   []string // files that verification found altered or missing and sent again
	Verified   int      // files verification read back and hashed (or found missing)
	// Range deltas, all attempts (deltastage.go): files staged from ranges
	// of the version the target served, the literal bytes sent for them
	// (also counted in Bytes) and the bytes the server copied itself.
	DeltaFiles int
	Literal    int64
	Copied     int64
}

// MinRateWire is the least staging time a rate is computed from: below it
// the clock says more about scheduling than about the link.
const MinRateWire = 50 * time.Millisecond

// Rate is the rate the uploads ran at, in bytes per second: the bytes sent
// over the time spent staging, both over all attempts. ok is false when
// too little was sent to tell.
func (r Result) Rate() (float64, bool) {
	if r.Bytes <= 0 || r.Wire < MinRateWire {
		return 0, false
	}
	return float64(r.Bytes) / r.Wire.Seconds(), true
}

// PushError records why a target did not acknowledge a cut.
type PushError struct {
	Target string
	CutID  string
	Seq    int64
	Err    error
}

func (e *PushError) Error() string {
	return fmt.Sprintf("push cut %d (%s) to %s: %v", e.Seq, e.CutID, e.Target, e.Err)
}
func (e *PushError) Unwrap() error { return e.Err }

func (e *Engine) init() {
	e.initOnce.Do(func() {
		if e.Log == nil {
			e.Log = zap.NewNop()
		}
		if e.Now == nil {
			e.Now = time.Now
		}
		if e.TargetsInFlight <= 0 {
			e.TargetsInFlight = 32
		}
		if e.FilesInFlight <= 0 {
			e.FilesInFlight = defaultFilesInFlight
		}
		if e.Retry.Attempts <= 0 {
			e.Retry.Attempts = 5
		}
		if e.Retry.Base <= 0 {
			e.Retry.Base = time.Second
		}
		if e.Retry.Max <= 0 {
			e.Retry.Max = 30 * time.Second
		}
		if e.CycleTimeout <= 0 {
			e.CycleTimeout = 10 * time.Minute
		}
		if e.RetentionWindow <= 0 {
			e.RetentionWindow = 30 * time.Minute
		}
		e.uplink = NewLimiter(e.Uplink)
		e.verified = map[string]*objectCheck{}
		e.progLast = map[string]time.Time{}
		e.manifests = map[string]*packager.Manifest{}
		e.pkgs = map[pkgKey]*pkgBuild{}
		e.wholeFiles = map[string]bool{}
	})
}

func (e *Engine) now() time.Time { return e.Now() }

// draining reports whether Drain was closed.
func (e *Engine) draining() bool {
	select {
	case <-e.Drain:
		return true
	default:
		return false
	}
}
func (e *Engine) filesInFlight() int { return e.FilesInFlight }

// ErrNoCut is returned when the store holds no cut to push.
var ErrNoCut = errors.New("no cut in the store yet (run prepcast cut first)")

// latest loads and verifies the newest cut of the store.
//
// Every target of a push shares one parsed manifest per cut (a 50,000-file
// manifest is tens of MB parsed), loaded and verified once.
func (e *Engine) latest() (*cutRef, error) {
	ci, err := e.Store.Latest()
	if err != nil {
		return nil, err
	}
	if ci == nil {
		return nil, ErrNoCut
	}
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	if c := e.latestRef; c != nil && c.info.Seq == ci.Seq && c.manifest == ci.ManifestSHA256 {
		return c, nil
	}
	m, mb, sig, err := e.Store.VerifiedManifest(ci.Seq, e.PublicKey)
	if err != nil {
		return nil, err
	}
	c := &cutRef{info: ci, m: m, mbytes: mb, sig: sig, sigB64: packager.SignatureBase64(sig), manifest: packager.Hash(mb)}
	e.latestRef = c
	return c, nil
}

// manifest returns the parsed manifest of cut seq if its hash is sha,
// shared by every target that acknowledges that cut.
func (e *Engine) manifest(seq int64, sha string) (*packager.Manifest, bool) {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	key := fmt.Sprintf("%d %s", seq, sha)
	if m, ok := e.manifests[key]; ok {
		return m, m != nil
	}
	m, mb, err := e.Store.Manifest(seq)
	if err != nil || packager.Hash(mb) != sha {
		e.manifests[key] = nil
		return nil, false
	}
	e.manifests[key] = m
	return m, true
}

// LatestSeq returns the sequence number of the store's newest cut (0 if none).
func (e *Engine) LatestSeq() int64 {
	ci, err := e.Store.Latest()
	if err != nil || ci == nil {
		return 0
	}
	return ci.Seq
}

// Push brings every target to the latest cut of the store, TargetsInFlight
// at a time. A target that fails, hangs or is slow never holds up or
// cancels the others. If a newer cut appears while a target is pushed, that
// target goes on to the newer cut (the latest cut wins). Results are in the
// order of ts.
func (e *Engine) Push(ctx context.Context, ts []TargetSpec) []Result {
	e.init()
	results := make([]Result, len(ts))
	var g errgroup.Group // no shared cancellation: one target's error is its own
	g.SetLimit(e.TargetsInFlight)
	for i, spec := range ts {
		g.Go(func() error {
			results[i] = e.pushTarget(ctx, spec)
			return nil
		})
	}
	_ = g.Wait()
	return results
}

func (e *Engine) pushTarget(ctx context.Context, spec TargetSpec) Result {
	t := spec.Target
	name := t.Name()
	start := time.Now()
	res := Result{Target: name}
	log := e.Log.With(zap.String("target", name))
	ctx, cancel := context.WithTimeout(ctx, e.CycleTimeout)
	defer cancel()
	e.recallAdaptation(log, t)
	run := &targetRun{e: e, t: t, apply: spec.Apply, log: log, limiter: NewLimiter(spec.Limit), staged: map[string]bool{}, synced: map[string]bool{}, dirs: map[string]bool{}, start: start}
	var cur *cutRef
	attempt := 0
	var lastErr error
	run.prog = func(stage string, done, total int64, files, filesTotal int) {
		p := Progress{Target: name, State: stage, BytesDone: done, BytesTotal: total, FilesDone: files, FilesTotal: filesTotal, Attempt: attempt}
		if cur != nil {
			p.Seq, p.CutID = cur.m.Seq, cur.m.ID
		}
		if el := time.Since(start).Seconds(); el > 0 {
			p.BytesPerSec = float64(run.sent.Load()) / el
		}
		e.progress(p, false)
	}
	for {
		c, err := e.latest()
		if err != nil {
			res.Err = &PushError{Target: name, Err: err}
			e.finish(log, &res, cur, run)
			return res
		}
		if cur == nil || c.m.Seq != cur.m.Seq {
			attempt = 0
		}
		cur = c
		attempt++
		res.Attempts++
		run.prog("connecting", 0, 0, 0, 0)
		attemptID := e.beginAttempt(name, c, attempt)
		aStart := time.Now()
		sentBefore := run.sent.Load()
		ack, st, err := run.pushCut(ctx, c)
		e.endAttempt(attemptID, st, run.sent.Load()-sentBefore, err, ctx)
		res.Wire += st.Wire
		res.Reconciled = res.Reconciled || st.Reconciled
		if err == nil {
			res.Files += st.Files // once per acknowledged cut
			res.Ack, res.Err, lastErr = ack, nil, nil
			res.Cuts = append(res.Cuts, ack.Seq)
			e.recordAck(log, name, ack)
			log.Debug("cut acknowledged", zap.Int64("seq", ack.Seq), zap.Int64("bytes", st.Bytes),
				zap.Int("files", st.Files), zap.Duration("took", time.Since(aStart)))
			if e.LatestSeq() > c.m.Seq && ctx.Err() == nil && !e.draining() {
				continue // a newer cut appeared meanwhile: the latest cut wins
			}
			if (e.Verify || e.Rotation.enabled()) && res.Repaired == nil {
				repaired, err := run.verify(ctx, c, e.Verify)
				res.Verified = run.verified
				if err != nil {
					res.Err = &PushError{Target: name, CutID: c.m.ID, Seq: c.m.Seq, Err: err}
					e.finish(log, &res, cur, run)
					return res
				}
				res.Repaired = append([]string{}, repaired...)
			}
			e.finish(log, &res, cur, run)
			return res
		}
		lastErr = err
		res.Err = &PushError{Target: name, CutID: c.m.ID, Seq: c.m.Seq, Err: err}
		if e.LatestSeq() > c.m.Seq && ctx.Err() == nil && !e.draining() && (targets.IsRetryable(err) || errors.Is(err, errSuperseded)) {
			log.Info("newer cut while pushing; moving on to it", zap.Int64("seq", c.m.Seq), zap.Error(err))
			continue // the latest cut wins; attempts count again for it
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
				res.Err = &PushError{Target: name, CutID: c.m.ID, Seq: c.m.Seq, Err: fmt.Errorf("cycle deadline (%s) passed: %w", e.CycleTimeout, err)}
			}
			e.finish(log, &res, cur, run)
			return res
		}
		if !targets.IsRetryable(err) || attempt >= e.Retry.Attempts || e.draining() {
			e.finish(log, &res, cur, run)
			return res
		}
		d := e.backoff(attempt)
		log.Debug("retrying", zap.Int("attempt", attempt), zap.Duration("in", d), zap.Error(err))
		e.progress(Progress{Target: name, Seq: c.m.Seq, CutID: c.m.ID, State: "retrying", Attempt: attempt,
			RetryAt: time.Now().Add(d), LastError: shortError(lastErr)}, true)
		select {
		case <-ctx.Done():
			res.Err = &PushError{Target: name, CutID: c.m.ID, Seq: c.m.Seq, Err: errors.Join(err, ctx.Err())}
			e.finish(log, &res, cur, run)
			return res
		case <-time.After(d):
		}
	}
}

// backoff returns the wait before the next attempt: exponential, capped,
// with jitter in [d/2, d].
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.Retry.Base << min(attempt-1, 20)
	if d > e.Retry.Max || d <= 0 {
		d = e.Retry.Max
	}
	return d/2 + rand.N(d/2+1)
}

// finish logs the push outcome once and publishes the final progress.
func (e *Engine) finish(log *zap.Logger, res *Result, cur *cutRef, run *targetRun) {
	bytes := run.sent.Load()
	res.Bytes = bytes
	res.DeltaFiles, res.Literal, res.Copied = int(run.deltaFiles.Load()), run.literal.Load(), run.copied.Load()
	res.Duration = time.Since(run.start)
	if a, ok := run.t.(targets.Adapter); ok {
		res.Strategy = a.Adaptation()
		e.rememberAdaptation(log, run.t)
	}
	fields := []zap.Field{zap.Int64("bytes", bytes), zap.Int("files", res.Files), zap.Duration("wire", res.Wire),
		zap.Int("attempts", res.Attempts)}
	if res.DeltaFiles > 0 {
		fields = append(fields, zap.Int("delta_files", res.DeltaFiles), zap.Int64("literal_bytes", res.Literal), zap.Int64("copied_on_server_bytes", res.Copied))
	}
	if r, ok := res.Rate(); ok {
		fields = append(fields, zap.Float64("mb_per_s", r/1e6))
	}
	if res.Strategy != "" {
		fields = append(fields, zap.String("strategy", res.Strategy))
	}
	p := Progress{Target: res.Target, Attempt: res.Attempts}
	if cur != nil {
		p.Seq, p.CutID = cur.m.Seq, cur.m.ID
		fields = append(fields, zap.Int64("seq", cur.m.Seq), zap.String("cut", cur.m.ID))
	}
	if res.Err != nil && (errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, ErrStopped)) {
		p.State, p.LastError = "idle", "interrupted"
		log.Warn("push interrupted", fields...)
	} else if res.Err != nil {
		p.State, p.LastError = "failing", shortError(res.Err)
		log.Error("push failed", append(fields, zap.Error(res.Err))...)
	} else {
		p.State = "ok"
		log.Info("push acknowledged", fields...)
	}
	e.progress(p, true)
}

// shortError is the innermost useful part of an error for a status line.
func shortError(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func (e *Engine) progress(p Progress, force bool) {
	if e.OnProgress != nil {
		e.OnProgress(p)
	}
	if e.DB == nil {
		return
	}
	e.progMu.Lock()
	last := e.progLast[p.Target]
	if !force && time.Since(last) < 250*time.Millisecond {
		e.progMu.Unlock()
		return
	}
	e.progLast[p.Target] = time.Now()
	e.progMu.Unlock()
	err := e.DB.SetProgress(context.Background(), state.Progress{
		Target: p.Target, PID: pid, Seq: p.Seq, CutID: p.CutID, State: p.State,
		BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, FilesDone: p.FilesDone, FilesTotal: p.FilesTotal,
		Attempt: p.Attempt, RetryAt: p.RetryAt, LastError: p.LastError, RateBps: p.BytesPerSec, Updated: time.Now(),
	})
	if err != nil {
		e.Log.Warn("record progress", zap.Error(err))
	}
}

func (e *Engine) beginAttempt(target string, c *cutRef, n int) int64 {
	if e.DB == nil {
		return 0
	}
	id, err := e.DB.BeginAttempt(context.Background(), state.Attempt{Target: target, Seq: c.m.Seq, CutID: c.m.ID, N: n, Start: time.Now(), Result: "running"})
	if err != nil {
		e.Log.Warn("record attempt", zap.Error(err))
	}
	return id
}

func (e *Engine) endAttempt(id int64, st attemptStats, bytes int64, err error, ctx context.Context) {
	if e.DB == nil || id == 0 {
		return
	}
	result, text := "ok", ""
	switch {
	case err == nil:
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		result, text = "canceled", err.Error()
	default:
		result, text = "failed", err.Error()
	}
	if e2 := e.DB.EndAttempt(context.Background(), id, time.Now(), bytes, st.Uploaded, st.Wire.Seconds(), result, text); e2 != nil {
		e.Log.Warn("record attempt", zap.Error(e2))
	}
	e.recordDelta(id, st)
}

// mirrorRemote makes the local mirror agree with what the target itself
// says, so the local state never claims an ack the target lacks.
func (e *Engine) mirrorRemote(log *zap.Logger, target string, a *Ack) {
	if e.DB == nil {
		return
	}
	var err error
	if a == nil {
		err = e.DB.DeleteAck(context.Background(), target)
	} else {
		err = e.DB.ResetAck(context.Background(), state.Ack{Target: target, Seq: a.Seq, CutID: a.ID, ManifestSHA256: a.Manifest, AckedAt: a.Time})
	}
	if err != nil {
		log.Warn("mirror the target's ack locally", zap.Error(err))
	}
}

// recordAck mirrors a target's remote ack locally, after the remote write.
func (e *Engine) recordAck(log *zap.Logger, target string, a *Ack) {
	if e.DB == nil {
		return
	}
	err := e.DB.ResetAck(context.Background(), state.Ack{Target: target, Seq: a.Seq, CutID: a.ID, ManifestSHA256: a.Manifest, AckedAt: a.Time})
	if err != nil {
		log.Error("record ack locally (the target's own ack is written; status will show it after --probe)", zap.Error(err))
	}
}

var pid = osGetpid()
