package schedule

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

var mx = func() *time.Location { l, _ := time.LoadLocation("America/Mexico_City"); return l }()

func at(h, m int) time.Time { return time.Date(2024, 6, 2, h, m, 0, 0, mx) }

func TestPlanTicksAlignedToTheClock(t *testing.T) {
	p := Plan{Every: 10 * time.Minute, Zone: mx}
	tests := []struct{ now, prev, next time.Time }{
		{at(20, 3), at(20, 0), at(20, 10)},
		{at(20, 10), at(20, 10), at(20, 20)},
		{at(23, 59), at(23, 50), time.Date(2024, 6, 3, 0, 0, 0, 0, mx)},
	}
	for _, tt := range tests {
		if got := p.Prev(tt.now); !got.Equal(tt.prev) {
			t.Errorf("Prev(%v) = %v, want %v", tt.now, got, tt.prev)
		}
		if got := p.Next(tt.now); !got.Equal(tt.next) {
			t.Errorf("Next(%v) = %v, want %v", tt.now, got, tt.next)
		}
	}
	// With a window, ticks count from Start and the first one is Start.
	w := Plan{Every: 15 * time.Minute, Start: at(20, 0), End: at(23, 0), HoldUntil: at(23, 30), Zone: mx}
	if got := w.Next(at(18, 7)); !got.Equal(at(20, 0)) {
		t.Errorf("before the window, Next = %v, want the start", got)
	}
	phases := []struct {
		t    time.Time
		want Phase
	}{{at(19, 59), Before}, {at(20, 0), Cutting}, {at(23, 0), Cutting}, {at(23, 1), Holding}, {at(23, 30), Over}}
	for _, ph := range phases {
		if got := w.PhaseAt(ph.t); got != ph.want {
			t.Errorf("PhaseAt(%v) = %v, want %v", ph.t.Format("15:04"), got, ph.want)
		}
	}
	if (Plan{Every: time.Minute, End: at(21, 0)}).PhaseAt(at(21, 1)) != Over {
		t.Error("after End without hold_until the plan is over")
	}
}

// fakeClock advances only when told; After fires when Now reaches its time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Advance moves the clock to the earliest pending timer and fires it; it
// reports false if none is pending.
func (c *fakeClock) fireNext() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return false
	}
	i := 0
	for j, w := range c.waiters {
		if w.at.Before(c.waiters[i].at) {
			i = j
		}
	}
	w := c.waiters[i]
	c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
	if w.at.After(c.now) {
		c.now = w.at
	}
	w.ch <- c.now
	return true
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type call struct {
	at  time.Time
	cut bool
}

// runPlan runs the plan on a fake clock from start; each cycle takes the
// duration dur returns. It returns the cycles' start times and kinds.
func runPlan(t *testing.T, p Plan, start time.Time, dur func(i int) time.Duration, trigger chan struct{}, onCycle func(i int)) []call {
	t.Helper()
	clk := &fakeClock{now: start}
	var calls []call
	r := &Runner{Plan: p, Clock: clk, Trigger: trigger, Cycle: func(ctx context.Context, cut bool) error {
		calls = append(calls, call{clk.Now(), cut})
		if onCycle != nil {
			onCycle(len(calls) - 1)
		}
		clk.advance(dur(len(calls) - 1))
		if len(calls) > 200 {
			return errors.New("runaway")
		}
		return nil
	}}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return calls
		default:
		}
		if !clk.fireNext() {
			time.Sleep(time.Millisecond)
		}
	}
}

func TestRunnerWindowHoldAndCoalescing(t *testing.T) {
	p := Plan{Every: 10 * time.Minute, Start: at(20, 0), End: at(21, 0), HoldUntil: at(21, 30), Zone: mx}
	// The 20:20 cycle takes 25 minutes: the 20:30 and 20:40 ticks coalesce
	// into one cycle at 20:45, and the schedule goes on at 20:50.
	calls := runPlan(t, p, at(19, 42), func(i int) time.Duration {
		if i == 2 {
			return 25 * time.Minute
		}
		return time.Minute
	}, nil, nil)
	want := []call{
		{at(20, 0), true}, {at(20, 10), true}, {at(20, 20), true}, {at(20, 45), true}, {at(20, 50), true}, {at(21, 0), true},
		{at(21, 10), false}, {at(21, 20), false},
	}
	if len(calls) != len(want) {
		t.Fatalf("cycles %v, want %v", fmtCalls(calls), fmtCalls(want))
	}
	for i := range want {
		if !calls[i].at.Equal(want[i].at) || calls[i].cut != want[i].cut {
			t.Fatalf("cycles %v, want %v", fmtCalls(calls), fmtCalls(want))
		}
	}
}

func TestRunnerTrigger(t *testing.T) {
	p := Plan{Every: 10 * time.Minute, Start: at(20, 0), End: at(20, 30), Zone: mx}
	trigger := make(chan struct{}, 1)
	// During the first cycle an operator asks for an immediate one: it runs
	// right after (not concurrently), then the schedule goes on.
	calls := runPlan(t, p, at(19, 58), func(int) time.Duration { return time.Minute }, trigger, func(i int) {
		if i == 0 {
			trigger <- struct{}{}
		}
	})
	want := []time.Time{at(20, 0), at(20, 1), at(20, 10), at(20, 20), at(20, 30)}
	if len(calls) != len(want) {
		t.Fatalf("cycles %v", fmtCalls(calls))
	}
	for i := range want {
		if !calls[i].at.Equal(want[i]) {
			t.Fatalf("cycles %v", fmtCalls(calls))
		}
	}
}

func fmtCalls(cs []call) []string {
	var out []string
	for _, c := range cs {
		s := c.at.Format("15:04")
		if !c.cut {
			s += "(push)"
		}
		out = append(out, s)
	}
	return out
}
