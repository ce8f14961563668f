// Package schedule decides when the daemon ("prepcast run") makes a cut and
// pushes it: every interval, aligned to the clock, inside the night's
// window; then, until hold_until, it keeps checking (and repairing) that
// every difusor holds the final cut. Cycles never overlap: ticks missed while
// a cycle runs coalesce into one cycle right after it.
package schedule

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Plan is the night's schedule. Zero Start, End or HoldUntil mean: from
// now, without end, no hold.
type Plan struct {
	Every     time.Duration
	Start     time.Time
	End       time.Time // last cut at or before End
	HoldUntil time.Time // after End, push-only checks until then
	Zone      *time.Location
}

// Phase is where the night is at a moment.
type Phase int

// The phases of a night, in order.
const (
	Before  Phase = iota // before Start: waiting
	Cutting              // Start ≤ t ≤ End: cut and push at every tick
	Holding              // End < t < HoldUntil: push only, to repair
	Over                 // after HoldUntil (or End without hold): the daemon stops
)

func (p Phase) String() string {
	return [...]string{"before the window", "cutting", "holding the final cut", "over"}[p]
}

// PhaseAt returns the phase at t.
func (p Plan) PhaseAt(t time.Time) Phase {
	switch {
	case !p.Start.IsZero() && t.Before(p.Start):
		return Before
	case p.End.IsZero() || !t.After(p.End):
		return Cutting
	case !p.HoldUntil.IsZero() && t.Before(p.HoldUntil):
		return Holding
	}
	return Over
}

// origin is the instant ticks are counted from: Start, or midnight in Zone.
func (p Plan) origin(t time.Time) time.Time {
	if !p.Start.IsZero() {
		return p.Start
	}
	zone := p.Zone
	if zone == nil {
		zone = time.UTC
	}
	lt := t.In(zone)
	return time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, zone)
}

// Prev returns the latest tick at or before t (ticks are origin + k·Every).
func (p Plan) Prev(t time.Time) time.Time {
	o := p.origin(t)
	if t.Before(o) {
		return o.Add(-p.Every * (o.Sub(t)/p.Every + 1))
	}
	return o.Add(t.Sub(o) / p.Every * p.Every)
}

// Next returns the first tick strictly after t.
func (p Plan) Next(t time.Time) time.Time {
	n := p.Prev(t).Add(p.Every)
	if !p.Start.IsZero() && n.Before(p.Start) {
		return p.Start
	}
	return n
}

// Clock is the time source; tests use a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Runner runs cycles on a plan.
type Runner struct {
	Plan  Plan
	Clock Clock
	// Cycle makes a cut (when cut is true) and pushes it. Its error is
	// logged; the schedule goes on.
	Cycle func(ctx context.Context, cut bool) error
	// Trigger requests an immediate cycle (an operator's signal). Give it a
	// buffer of one and send without blocking: requests made while a cycle
	// runs then coalesce into one cycle after it.
	Trigger <-chan struct{}
	Log     *zap.Logger
	// OnWait, if set, is told the phase and the next tick each time the
	// runner starts waiting.
	OnWait func(Phase, time.Time)
}

// Run runs until ctx ends or the plan is over.
func (r *Runner) Run(ctx context.Context) error {
	clock := r.Clock
	if clock == nil {
		clock = RealClock
	}
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	served := time.Time{} // the last tick a cycle served
	for {
		now := clock.Now()
		phase := r.Plan.PhaseAt(now)
		if phase == Over {
			log.Info("schedule over", zap.Time("hold_until", r.Plan.HoldUntil))
			return nil
		}
		// A tick that passed while the last cycle ran is served now, once.
		due := r.Plan.Prev(now)
		wait := time.Duration(0)
		if served.IsZero() || !due.After(served) {
			next := r.Plan.Next(now)
			wait = next.Sub(now)
			due = next
			if r.OnWait != nil {
				r.OnWait(phase, next)
			}
		}
		triggered := false
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-clock.After(wait):
			case <-r.Trigger:
				triggered = true
			}
		}
		now = clock.Now()
		phase = r.Plan.PhaseAt(now)
		if phase == Over {
			continue
		}
		if phase == Before && !triggered {
			continue // woke at Start: the loop sees Cutting next
		}
		if !triggered {
			served = due
		} else if p := r.Plan.Prev(now); p.After(served) {
			served = p // a triggered cycle also serves the tick it follows
		}
		cut := phase == Cutting || (phase == Before && triggered)
		log.Info("cycle", zap.Stringer("phase", phase), zap.Bool("cut", cut), zap.Bool("triggered", triggered))
		if err := r.Cycle(ctx, cut); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Error("cycle failed", zap.Error(err))
		}
		// A trigger that arrived during the cycle stays pending: the next
		// wait takes it at once, so one more cycle follows.
	}
}
