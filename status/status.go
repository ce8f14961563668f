// Package status computes what the operator sees: the latest cut and, per
// difusor, the cut it acknowledges, how far behind it is, and what its push
// is doing. It reads the cut store and the state database only (never
// blocking a push that runs in another process) and, on request, each
// target's own ack.
package status

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

// Schema names the JSON layout of [View]; it changes only when a field
// changes meaning or goes away.
const Schema = "prepcast-status/1"

// View is the status of a publisher at one moment. Its JSON form is the
// output of "prepcast status --json" and of /status in daemon mode.
type View struct {
	Schema        string    `json:"schema"`
	Generated     time.Time `json:"generated"`
	Latest        *Cut      `json:"latest"` // null before the first cut
	MaxLagSeconds float64   `json:"max_lag_seconds"`
	Counts        Counts    `json:"counts"`
	Targets       []Target  `json:"targets"` // worst first

	latestFiles int // files of the latest cut: bounds what a probe reads
}

// Cut is the latest cut.
type Cut struct {
	Seq        int64     `json:"seq"`
	ID         string    `json:"id"`
	Created    time.Time `json:"created"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Counts summarises the targets by state.
type Counts struct {
	Targets  int `json:"targets"`
	Acked    int `json:"acked"`    // hold the latest cut
	Pushing  int `json:"pushing"`  // a push is moving them now
	Retrying int `json:"retrying"` // waiting to try again
	Failing  int `json:"failing"`  // the last push gave up
	Behind   int `json:"behind"`   // lag over max_lag
	// NotServed counts targets that acknowledge a cut their public site
	// does not serve exactly (see [View.ApplyServed]).
	NotServed int `json:"not_served"`
}

// States a target can be in.
const (
	StateOK          = "ok"           // holds the latest cut
	StatePushing     = "pushing"      // a push is connecting, staging or committing
	StateRetrying    = "retrying"     // a push waits before its next attempt
	StateFailing     = "failing"      // the last push gave up
	StateInterrupted = "interrupted"  // the process pushing it died
	StateBehind      = "behind"       // lacks the latest cut, no push running
	StateNever       = "never pushed" // no ack at all
)

// Target is one difusor's line.
type Target struct {
	Name       string    `json:"name"`
	AckedSeq   int64     `json:"acked_seq"` // 0: none
	AckedID    string    `json:"acked_id,omitempty"`
	AckedAt    time.Time `json:"acked_at,omitzero"`
	LagCuts    int64     `json:"lag_cuts"`
	LagSeconds float64   `json:"lag_seconds"` // since the first cut it lacks was made
	Behind     bool      `json:"behind"`      // LagSeconds over max_lag
	State      string    `json:"state"`
	Detail     string    `json:"detail"` // the state in words, e.g. "pushing 37 % ETA 0:42"
	Attempt    int       `json:"attempt,omitempty"`
	RetryAt    time.Time `json:"retry_at,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	// Progress of the push running now (or the last one).
	PushingSeq   int64   `json:"pushing_seq,omitempty"`
	BytesDone    int64   `json:"bytes_done"`
	BytesTotal   int64   `json:"bytes_total"`
	FilesDone    int     `json:"files_done"`
	FilesTotal   int     `json:"files_total"`
	RateBps      float64 `json:"rate_bytes_per_second"`
	ETASeconds   float64 `json:"eta_seconds,omitempty"`
	LastPushMBps float64 `json:"last_push_mb_per_second"` // last finished push that moved bytes
	Probe        *Probe  `json:"probe,omitempty"`
	// Verify is what the rotating verification of the files the target
	// serves found; absent before its first check.
	Verify *Verify `json:"verify,omitempty"`
	// LastCheck is the latest "prepcast check" of the difusor; nil if it was
	// never checked.
	LastCheck *LastCheck `json:"last_check,omitempty"`
	// KeyTrust is how a package-mode difusor's "prepcast apply" trusts the
	// institute's key, as it last said: "public-key" (fixed, recommended),
	// "trust-on-first-use" (pinned at its first verified package) or "none".
	KeyTrust string `json:"key_trust,omitempty"`
	// Served is the public site's last check over HTTP; NotServed is set
	// when the site, checked since the ack, does not serve the acked cut.
	Served    *Served `json:"served,omitempty"`
	NotServed bool    `json:"acked_not_served"`

	words string // Detail without the error's cause, which a table shows apart
}

// Verify is what reading back and hashing the target's files found.
type Verify struct {
	CheckedAt    time.Time `json:"checked_at,omitzero"` // last check
	FilesChecked int64     `json:"files_checked"`       // files read back and hashed, all checks
	Rounds       int64     `json:"rounds"`              // times every file of the cut was checked
	// Mismatches counts the files found missing or different from the
	// signed cut, all checks; Pending lists those not repaired yet (the
	// next push sends them again), Repaired those of the last repair.
	Mismatches     int64     `json:"mismatches"`
	LastMismatchAt time.Time `json:"last_mismatch_at,omitzero"`
	Pending        []string  `json:"pending,omitempty"`
	Repaired       []string  `json:"repaired,omitempty"`
	RepairedAt     time.Time `json:"repaired_at,omitzero"`
}

// LastCheck summarises a difusor's checks against the call's rules.
type LastCheck struct {
	Time       time.Time `json:"time"`
	Passed     bool      `json:"passed"`
	LastPassed time.Time `json:"last_passed,omitzero"` // the latest check that passed
}

// StateWords is the target's state in words without the error's cause
// (shown apart, by [Cause], in its own column).
func (t *Target) StateWords() string {
	if t.words != "" {
		return t.words
	}
	return t.Detail
}

// Probe is what the target's own .prepcast/ack.json says (status --probe).
type Probe struct {
	RemoteSeq      int64  `json:"remote_seq"`
	RemoteID       string `json:"remote_id,omitempty"`
	RemoteManifest string `json:"remote_manifest_sha256,omitempty"`
	Agrees         bool   `json:"agrees"` // the local mirror says the same
	Error          string `json:"error,omitempty"`
}

// Source is where [Build] reads from.
type Source struct {
	Store   *packager.Store
	DB      *state.DB // may be nil: no push has run yet
	Targets []string  // the enabled targets, in config order
	MaxLag  time.Duration
}

// Build computes the view at now.
func Build(ctx context.Context, src Source, now time.Time) (*View, error) {
	v := &View{Schema: Schema, Generated: now.UTC(), MaxLagSeconds: src.MaxLag.Seconds(), Targets: []Target{}}
	cuts, err := src.Store.Cuts()
	if err != nil {
		return nil, err
	}
	if len(cuts) > 0 {
		l := cuts[len(cuts)-1]
		v.Latest = &Cut{Seq: l.Seq, ID: l.ID, Created: l.Created, AgeSeconds: max(0, now.Sub(l.Created).Seconds())}
	}
	if len(cuts) > 0 {
		v.latestFiles = cuts[len(cuts)-1].Files
	}
	acks := map[string]state.Ack{}
	progress := map[string]state.Progress{}
	verifies := map[string]state.Verify{}
	trusts := map[string]string{}
	last := map[string]state.Attempt{}
	checks := map[string]state.CheckSummary{}
	lastFail := map[string]state.Attempt{} // newest failed attempt: its whole error text
	if src.DB != nil {
		if checks, err = src.DB.LastChecks(ctx); err != nil {
			return nil, err
		}
		if acks, err = src.DB.Acks(ctx); err != nil {
			return nil, err
		}
		ps, err := src.DB.Progress(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			progress[p.Target] = p
		}
		if verifies, err = src.DB.Verifies(ctx); err != nil {
			return nil, err
		}
		if trusts, err = src.DB.KeyTrusts(ctx); err != nil {
			return nil, err
		}
		hist, err := src.DB.History(ctx, "", 2000)
		if err != nil {
			return nil, err
		}
		for _, a := range hist { // newest first
			if _, ok := lastFail[a.Target]; !ok && a.Result != state.ResultOK && a.Error != "" {
				lastFail[a.Target] = a
			}
			if _, ok := last[a.Target]; !ok && a.Result == state.ResultOK && a.Bytes > 0 && a.WireSeconds > 0 {
				last[a.Target] = a
			}
		}
	}
	for _, name := range src.Targets {
		t := Target{Name: name}
		a, acked := acks[name]
		if acked {
			t.AckedSeq, t.AckedID, t.AckedAt = a.Seq, a.CutID, a.AckedAt
		}
		if v.Latest != nil && t.AckedSeq < v.Latest.Seq {
			t.LagCuts = v.Latest.Seq - t.AckedSeq
			t.LagSeconds = max(0, now.Sub(firstMissing(cuts, t.AckedSeq)).Seconds())
		}
		t.Behind = t.LagCuts > 0 && t.LagSeconds > src.MaxLag.Seconds()
		if ck, ok := checks[name]; ok {
			t.LastCheck = &LastCheck{Time: ck.Last, Passed: ck.Passed, LastPassed: ck.LastPassed}
		}
		if la, ok := last[name]; ok {
			t.LastPushMBps = float64(la.Bytes) / 1e6 / la.WireSeconds
		}
		t.State, t.Detail = StateOK, "ok"
		if p, ok := progress[name]; ok {
			// The progress row holds the error bounded; the attempt
			// history holds its whole text.
			if f, ok := lastFail[name]; ok && f.Seq == p.Seq && strings.HasSuffix(p.LastError, "…") {
				p.LastError = f.Error
			}
			describe(&t, p, now)
		} else if t.LagCuts > 0 {
			t.State, t.Detail = StateBehind, "behind; no push running"
		}
		if !acked && t.State != StatePushing && t.State != StateRetrying && t.State != StateFailing {
			t.State, t.Detail = StateNever, StateNever
		}
		if vr, ok := verifies[name]; ok {
			t.Verify = &Verify{CheckedAt: vr.CheckedAt, FilesChecked: vr.Checked, Rounds: vr.Rounds, Mismatches: vr.Mismatches,
				LastMismatchAt: vr.LastMismatchAt, Pending: vr.Pending, Repaired: vr.Repaired, RepairedAt: vr.RepairedAt}
			t.Detail += t.Verify.mention(now)
		}
		if t.KeyTrust = trusts[name]; t.KeyTrust == "trust-on-first-use" {
			t.Detail += " · key trusted on first use (give apply --public-key)"
		}
		v.Targets = append(v.Targets, t)
	}
	sort.SliceStable(v.Targets, func(i, j int) bool { return worse(v.Targets[i], v.Targets[j]) })
	if src.DB != nil {
		if served, err := src.DB.LatestServed(ctx); err == nil {
			v.ApplyServed(served)
		}
	}
	v.Counts.Targets = len(v.Targets)
	for _, t := range v.Targets {
		switch {
		case t.LagCuts == 0 && t.AckedSeq > 0:
			v.Counts.Acked++
		case t.State == StatePushing:
			v.Counts.Pushing++
		case t.State == StateRetrying:
			v.Counts.Retrying++
		case t.State == StateFailing:
			v.Counts.Failing++
		}
		if t.Behind {
			v.Counts.Behind++
		}
	}
	return v, nil
}

// mention is the short note the STATE column carries about verification:
// files found differing and not repaired yet, or repaired within the last
// day.
func (v *Verify) mention(now time.Time) string {
	switch {
	case len(v.Pending) == 1:
		return " · verify: 1 file differs from the cut, sent again at the next push"
	case len(v.Pending) > 1:
		return fmt.Sprintf(" · verify: %d files differ from the cut, sent again at the next push", len(v.Pending))
	case len(v.Repaired) > 0 && now.Sub(v.RepairedAt) < 24*time.Hour:
		return fmt.Sprintf(" · verify: %d repaired %s ago", len(v.Repaired), max(0, now.Sub(v.RepairedAt)).Round(time.Second))
	}
	return ""
}

// firstMissing returns when the oldest cut after acked that the store still
// lists was made.
func firstMissing(cuts []*packager.CutInfo, acked int64) time.Time {
	for _, c := range cuts {
		if c.Seq > acked {
			return c.Created
		}
	}
	return cuts[len(cuts)-1].Created
}

// describe sets the state of t from its live progress row.
func describe(t *Target, p state.Progress, now time.Time) {
	t.Attempt, t.LastError = p.Attempt, p.LastError
	t.PushingSeq, t.BytesDone, t.BytesTotal = p.Seq, p.BytesDone, p.BytesTotal
	t.FilesDone, t.FilesTotal, t.RateBps = p.FilesDone, p.FilesTotal, p.RateBps
	alive := state.PIDAlive(p.PID)
	switch p.State {
	case state.StateConnecting, state.StateStaging, state.StateCommitting:
		if !alive {
			t.State, t.Detail = StateInterrupted, fmt.Sprintf("interrupted: process %d is gone", p.PID)
			return
		}
		t.State = StatePushing
		switch {
		case p.State == state.StateConnecting:
			t.Detail = fmt.Sprintf("pushing cut %d: connecting", p.Seq)
		case p.State == state.StateCommitting:
			t.Detail = fmt.Sprintf("pushing cut %d: committing", p.Seq)
		case p.BytesTotal > 0:
			pct := 100 * float64(p.BytesDone) / float64(p.BytesTotal)
			t.Detail = fmt.Sprintf("pushing %.0f %%", pct)
			if p.RateBps > 0 && p.BytesDone < p.BytesTotal {
				t.ETASeconds = float64(p.BytesTotal-p.BytesDone) / p.RateBps
				t.Detail += " ETA " + clock(time.Duration(t.ETASeconds*float64(time.Second)))
			}
		default:
			t.Detail = fmt.Sprintf("pushing cut %d", p.Seq)
		}
	case state.StateRetrying:
		if !alive {
			t.State, t.Detail = StateInterrupted, fmt.Sprintf("interrupted: process %d is gone", p.PID)
			return
		}
		t.State, t.RetryAt = StateRetrying, p.RetryAt
		in := max(0, p.RetryAt.Sub(now)).Round(time.Second)
		t.Detail = fmt.Sprintf("retrying in %s (attempt %d)", in, p.Attempt)
		t.words = t.Detail
		if p.LastError != "" {
			t.Detail += ": " + Cause(p.LastError)
		}
	case state.StateFailing:
		t.State, t.Detail, t.words = StateFailing, "failing: "+Cause(p.LastError), "failing"
	default: // ok, idle: no push in flight, so no progress to show
		t.PushingSeq, t.BytesDone, t.BytesTotal, t.FilesDone, t.FilesTotal, t.RateBps = 0, 0, 0, 0, 0, 0
		if t.LagCuts == 0 {
			t.LastError = ""
		}
		if t.LagCuts > 0 {
			t.State, t.Detail = StateBehind, "behind; no push running"
			t.words = t.Detail
			if p.LastError != "" {
				t.Detail += " (last: " + Cause(p.LastError) + ")"
			}
		}
	}
}

// severity orders states from worst to best.
var severity = map[string]int{StateFailing: 0, StateNotServed: 1, StateInterrupted: 1, StateRetrying: 2, StateNever: 3, StateBehind: 4, StatePushing: 5, StateOK: 6}

func worse(a, b Target) bool {
	if a.Behind != b.Behind {
		return a.Behind
	}
	if sa, sb := severity[a.State], severity[b.State]; sa != sb {
		return sa < sb
	}
	if a.LagSeconds != b.LagSeconds {
		return a.LagSeconds > b.LagSeconds
	}
	return a.Name < b.Name
}

// AllWithinMaxLag reports whether no target lags more than max_lag, and
// none acknowledges a cut its public site does not serve.
func (v *View) AllWithinMaxLag() bool { return v.Counts.Behind == 0 && v.Counts.NotServed == 0 }

// clock formats d as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// OpenDB opens the state database read-only for status; a database that
// does not exist yet gives nil, nil.
func OpenDB(path string) (*state.DB, error) {
	db, err := state.OpenReadOnly(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return db, err
}
