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
	// Served is the public site's last check over HTTP; NotServed is set
	// when the site, checked since the ack, does not serve the acked cut.
	Served    *Served `json:"served,omitempty"`
	NotServed bool    `json:"acked_not_served"`
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
	acks := map[string]state.Ack{}
	progress := map[string]state.Progress{}
	last := map[string]state.Attempt{}
	if src.DB != nil {
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
		hist, err := src.DB.History(ctx, "", 2000)
		if err != nil {
			return nil, err
		}
		for _, a := range hist { // newest first
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
		if la, ok := last[name]; ok {
			t.LastPushMBps = float64(la.Bytes) / 1e6 / la.WireSeconds
		}
		t.State, t.Detail = StateOK, "ok"
		if p, ok := progress[name]; ok {
			describe(&t, p, now)
		} else if t.LagCuts > 0 {
			t.State, t.Detail = StateBehind, "behind; no push running"
		}
		if !acked && t.State != StatePushing && t.State != StateRetrying && t.State != StateFailing {
			t.State, t.Detail = StateNever, StateNever
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
		if p.LastError != "" {
			t.Detail += ": " + ShortCause(p.LastError, 60)
		}
	case state.StateFailing:
		t.State, t.Detail = StateFailing, "failing: "+ShortCause(p.LastError, 70)
	default: // ok, idle
		if t.LagCuts > 0 {
			t.State, t.Detail = StateBehind, "behind; no push running"
			if p.LastError != "" {
				t.Detail += " (last: " + ShortCause(p.LastError, 50) + ")"
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

// ShortCause shortens an error chain to its last parts, at most n bytes,
// cut at a ": " boundary: "push …: sftp d2: dial tcp 127.0.0.1:22: connect:
// connection refused" becomes "dial tcp 127.0.0.1:22: connect: connection refused".
func ShortCause(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	best := ""
	for i := 0; i+2 <= len(s); i++ {
		if s[i] == ':' && s[i+1] == ' ' && len(s)-(i+2) <= n {
			best = s[i+2:]
			break
		}
	}
	if best == "" {
		return "…" + s[len(s)-n:]
	}
	// Drop closing parentheses whose opening one was cut away.
	for strings.Count(best, ")") > strings.Count(best, "(") && strings.HasSuffix(best, ")") {
		best = best[:len(best)-1]
	}
	return best
}

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
