package status

import (
	"fmt"
	"sort"
	"time"

	"github.com/prepcast/prepcast/state"
)

// StateNotServed is the state of a difusor that acknowledges a cut its
// public site does not serve exactly (403s, a wrong web root, a stale
// cache, altered files): it counts as lag.
const StateNotServed = "not served"

// Served is what a difusor's public site served when it was last checked
// over HTTP (prepcast run each cycle, status --probe).
type Served struct {
	Seq        int64     `json:"seq"` // 0: no signed cut served
	ID         string    `json:"id,omitempty"`
	Manifest   string    `json:"manifest_sha256,omitempty"`
	OK         bool      `json:"ok"` // exactly the signed cut Seq
	CheckedAt  time.Time `json:"checked_at"`
	Files      int       `json:"files_checked"`
	Mismatches int       `json:"mismatches"`
	HTTPErrors int       `json:"http_errors"`
	Problem    string    `json:"problem,omitempty"`
}

// ApplyServed records each target's latest public check in the view: a
// target that acknowledges a cut that its site, checked since the ack, does
// not serve exactly is flagged (NotServed, state "not served", counted in
// Counts.NotServed, which status's exit code treats as lag).
func (v *View) ApplyServed(latest map[string]state.Served) {
	v.Counts.NotServed = 0
	for i := range v.Targets {
		t := &v.Targets[i]
		s, ok := latest[t.Name]
		if !ok {
			continue
		}
		t.Served = &Served{Seq: s.Seq, ID: s.CutID, Manifest: s.Manifest, OK: s.OK, CheckedAt: s.At,
			Files: s.Checked, Mismatches: s.Mismatches, HTTPErrors: s.HTTPErrors, Problem: s.Problem}
		// A check older than the ack says nothing about the acked cut.
		t.NotServed = t.AckedSeq > 0 && !s.At.Before(t.AckedAt) && (s.Seq != t.AckedSeq || !s.OK)
		if t.NotServed {
			why := s.Problem
			if why == "" {
				why = fmt.Sprintf("the site serves cut %d", s.Seq)
			}
			t.Detail = "acked, not served: " + why
			if t.State == StateOK {
				t.State = StateNotServed
			}
			v.Counts.NotServed++
		}
	}
	sort.SliceStable(v.Targets, func(i, j int) bool { return worse(v.Targets[i], v.Targets[j]) })
}

// servedCell is the SERVED column of the table.
func (t Target) servedCell() string {
	s := t.Served
	switch {
	case s == nil:
		return "-"
	case s.Seq == 0:
		return "none"
	case s.OK:
		return fmt.Sprintf("%d %s", s.Seq, s.ID)
	}
	return fmt.Sprintf("%d %s !", s.Seq, s.ID)
}

// anyServed reports whether any target was checked over HTTP.
func (v *View) anyServed() bool {
	for _, t := range v.Targets {
		if t.Served != nil {
			return true
		}
	}
	return false
}
