package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/status"
)

// One difusor made unreachable shows as failing with its cause and a lag
// that grows while the others are ok; once it is back, the next push
// catches it up and every target is within max_lag again.
func TestStatusShowsUnreachableTargetAndRecovery(t *testing.T) {
	e := newEnv(t, 3)
	eng := e.engine()
	c1 := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), c1.Seq)
	down := e.servers[2]
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	c2 := e.nextCut()
	eng.Push(context.Background(), e.specs())
	src := status.Source{Store: e.store, DB: e.db, Targets: []string{"difusor-1", "difusor-2", "difusor-3"}, MaxLag: 15 * time.Minute}
	view := func(now time.Time) map[string]status.Target {
		v, err := status.Build(context.Background(), src, now)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]status.Target{}
		for _, tg := range v.Targets {
			out[tg.Name] = tg
		}
		if v.Targets[0].Name != "difusor-3" {
			t.Errorf("the failing target is not listed first: %s", v.Targets[0].Name)
		}
		return out
	}
	now := time.Now()
	v := view(now)
	d3 := v["difusor-3"]
	if d3.State != status.StateFailing || !strings.Contains(d3.Detail, "connection refused") || d3.LagCuts != 1 || d3.AckedSeq != 1 {
		t.Fatalf("unreachable target: %+v", d3)
	}
	for _, n := range []string{"difusor-1", "difusor-2"} {
		if v[n].State != status.StateOK || v[n].LagCuts != 0 || v[n].AckedSeq != c2.Seq {
			t.Fatalf("%s: %+v", n, v[n])
		}
	}
	later := view(now.Add(20 * time.Minute))["difusor-3"]
	if later.LagSeconds <= d3.LagSeconds || !later.Behind {
		t.Errorf("lag did not grow past max_lag: %.0f s then %.0f s, behind %v", d3.LagSeconds, later.LagSeconds, later.Behind)
	}
	if err := down.Restart(); err != nil {
		t.Fatal(err)
	}
	requireOK(t, eng.Push(context.Background(), e.specs()), c2.Seq)
	final, err := status.Build(context.Background(), src, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !final.AllWithinMaxLag() || final.Counts.Acked != 3 {
		t.Fatalf("after recovery: %+v", final.Counts)
	}
	e.checkTarget(down.WebRoot(), c2.Seq)
}
