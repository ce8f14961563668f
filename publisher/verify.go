package publisher

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

// DefaultVerifyPeriod is the time within which the rotating verification
// re-reads every file of the cut, unless configured otherwise.
const DefaultVerifyPeriod = 24 * time.Hour

// VerifyBudget says how much of what a target acknowledges each push reads
// back and hashes: the rotating verification. Each push checks a slice of
// the cut's files, in path order, starting where the previous push (in this
// process or another: the position is kept in the state database) stopped,
// so that every file is re-read within Period.
//
// With Bytes and Files zero, a push reads Every/Period of the cut's files
// and of its bytes (at least one file); at one push per Every, every file
// is re-read within Period. Bytes and Files, when set, replace that: a push
// reads files until the next would take it over Bytes, or it has read
// Files, whichever comes first (at least one file). A zero VerifyBudget
// checks nothing. Time bounds the rotation in time too.
type VerifyBudget struct {
	Period time.Duration // every file re-read within this; 0 with Bytes and Files zero: no rotation
	Every  time.Duration // the interval between pushes (the schedule); default 10m
	Bytes  int64         // bytes read back per push, when set
	Files  int           // files read back per push, when set
	// Time bounds how long a push reads back (0: no bound). Files it did
	// not reach are read first by the next push; on a difusor that sends
	// slowly a round then takes longer than Period, and the push says so.
	Time time.Duration
}

func (b VerifyBudget) enabled() bool { return b.Period > 0 || b.Bytes > 0 || b.Files > 0 }

// slice returns the entries of m a rotating check reads, starting at the
// first entry whose path is at or after from (wrapping to the first), the
// path the next check starts at, and whether the slice reached the end of
// the cut (a round completed).
func (b VerifyBudget) slice(m *packager.Manifest, from string) (picked []packager.Entry, next string, wrapped bool) {
	n := len(m.Entries)
	if n == 0 || !b.enabled() {
		return nil, from, false
	}
	var wantFiles, wantBytes int64 = math.MaxInt64, math.MaxInt64
	maxFiles, maxBytes := int64(b.Files), b.Bytes
	if maxFiles == 0 && maxBytes == 0 {
		every := b.Every
		if every <= 0 {
			every = 10 * time.Minute
		}
		frac := min(1, float64(every)/float64(b.Period))
		var total int64
		for _, e := range m.Entries {
			total += e.Size
		}
		wantFiles = int64(math.Ceil(float64(n) * frac))
		wantBytes = int64(math.Ceil(float64(total) * frac))
	}
	i := sort.Search(n, func(i int) bool { return m.Entries[i].Path >= from })
	var files, bytes int64
	for files < int64(n) {
		if i == n {
			i, wrapped = 0, true
		}
		e := m.Entries[i]
		if files > 0 && (maxFiles > 0 && files >= maxFiles ||
			maxBytes > 0 && bytes+e.Size > maxBytes ||
			files >= wantFiles && bytes >= wantBytes) {
			break
		}
		picked = append(picked, e)
		files++
		bytes += e.Size
		i++
	}
	if i == n {
		i, wrapped = 0, true
	}
	return picked, m.Entries[i].Path, wrapped
}

// verify checks that the target holds cut c as its ack claims, reading
// files back and comparing their SHA-256 with the manifest's (each read at
// most its manifest size). With all it lists the target and hashes every
// file of the cut; otherwise it hashes the files an earlier check found
// differing and not yet repaired, and the next slice of the rotation
// (e.Rotation). Whatever differs (tampered, truncated, grown, deleted) is
// recorded in the state database, sent again and committed, pointers
// last. It returns the paths repaired.
func (r *targetRun) verify(ctx context.Context, c *cutRef, all bool) ([]string, error) {
	name := r.t.Name()
	vs := state.Verify{Target: name}
	if r.e.DB != nil {
		v, err := r.e.DB.Verify(ctx, name)
		if err != nil {
			r.log.Warn("read the rotating verification's position; starting from the first file", zap.Error(err))
		} else {
			vs = v
		}
	}
	byPath := func(p string) (packager.Entry, bool) {
		i, ok := slices.BinarySearchFunc(c.m.Entries, p, func(e packager.Entry, p string) int {
			switch {
			case e.Path < p:
				return -1
			case e.Path > p:
				return 1
			}
			return 0
		})
		if !ok {
			return packager.Entry{}, false
		}
		return c.m.Entries[i], true
	}
	var check, bad, picked []packager.Entry
	wrapped := false
	if all {
		have, err := r.listRoot(ctx, c.m)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		for _, e := range c.m.Entries {
			if sz, ok := have[e.Path]; !ok || sz != e.Size {
				bad = append(bad, e)
			} else {
				check = append(check, e)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, p := range vs.Pending {
			if e, ok := byPath(p); ok && !seen[p] {
				check, seen[p] = append(check, e), true
			}
		}
		picked, vs.Next, wrapped = r.e.Rotation.slice(c.m, vs.Next)
		for _, e := range picked {
			if !seen[e.Path] {
				check, seen[e.Path] = append(check, e), true
			}
		}
	}
	budget, cancel := ctx, context.CancelFunc(func() {})
	if !all && r.e.Rotation.Time > 0 {
		budget, cancel = context.WithTimeout(ctx, r.e.Rotation.Time)
	}
	start := time.Now()
	differ, done, err := r.hashCheckUntil(ctx, budget, check)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	left, pendingLeft := unchecked(check, done, picked, &vs, &wrapped)
	if left > 0 {
		var bytesRead int64
		for i, e := range check {
			if done[i] {
				bytesRead += e.Size
			}
		}
		r.log.Warn("reading back from the difusor is slow: the rotating verification stopped at its time budget; "+
			"the files it did not reach are read at the next push, so a whole round takes longer than verify.period. "+
			"A server limit on downloads is the usual cause (MySecureShell's Download, 5 KB/s as Debian ships it)",
			zap.Duration("budget", r.e.Rotation.Time), zap.Int("checked", len(check)-left), zap.Int("left", left),
			zap.Int64("bytes_checked", bytesRead), zap.Duration("took", time.Since(start)))
	}
	bad = append(bad, differ...)
	sort.Slice(bad, func(i, j int) bool { return bad[i].Path < bad[j].Path })
	paths := make([]string, len(bad))
	var need int64
	for i, e := range bad {
		paths[i] = e.Path
		need += e.Size
	}
	now := r.e.now().UTC()
	r.verified = len(bad) - len(differ)
	for _, d := range done {
		if d {
			r.verified++
		}
	}
	vs.CheckedAt, vs.Checked = now, vs.Checked+int64(r.verified)
	if wrapped || all {
		vs.Rounds++
	}
	for _, p := range paths {
		if !slices.Contains(vs.Pending, p) {
			vs.Mismatches++
			vs.LastMismatchAt = now
		}
	}
	vs.Pending = append(paths, pendingLeft...)
	r.saveVerify(ctx, vs)
	if len(bad) == 0 {
		return nil, nil
	}
	r.log.Warn("files on the difusor differ from the cut it acknowledges; sending them again",
		zap.Int64("seq", c.m.Seq), zap.Int("files", len(bad)), zap.Strings("paths", paths[:min(len(paths), 20)]))
	if err := r.prepareStaging(ctx); err != nil {
		return nil, err
	}
	plan := stagingPlan(bad)
	r.sweepStaging(ctx, plan, nil)
	if err := r.stage(ctx, plan, need, nil, nil); err != nil {
		return nil, err
	}
	if err := r.commit(ctx, plan, c.m, nil); err != nil {
		return nil, err
	}
	vs.Pending, vs.Repaired, vs.RepairedAt = nil, paths, r.e.now().UTC()
	r.saveVerify(ctx, vs)
	return paths, nil
}

// unchecked counts the entries of check the time budget left unread (done
// says which were read) and returns the pending ones among them, which stay
// pending. The rotation resumes at the first picked file left unread
// (vs.Next), and counts a round (wrapped) only if it read past the end of
// the cut.
func unchecked(check []packager.Entry, done []bool, picked []packager.Entry, vs *state.Verify, wrapped *bool) (left int, pendingLeft []string) {
	unread := map[string]bool{}
	for i, e := range check {
		if !done[i] {
			left++
			unread[e.Path] = true
		}
	}
	if left == 0 {
		return 0, nil
	}
	for _, p := range vs.Pending {
		if unread[p] {
			pendingLeft = append(pendingLeft, p)
		}
	}
	passedEnd := false
	for i, e := range picked {
		// picked runs in path order from the previous position, wrapping
		// to the first path at most once.
		if i > 0 && e.Path < picked[i-1].Path {
			passedEnd = true
		}
		if unread[e.Path] {
			vs.Next, *wrapped = e.Path, passedEnd
			break
		}
	}
	return left, pendingLeft
}

// saveVerify records the verification of the target; a failure to record
// it costs only the position of the rotation, so it is logged.
func (r *targetRun) saveVerify(ctx context.Context, vs state.Verify) {
	if r.e.DB == nil {
		return
	}
	if err := r.e.DB.SetVerify(context.WithoutCancel(ctx), vs); err != nil {
		r.log.Warn("record the verification", zap.Error(err))
	}
}
