package status

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prepcast/prepcast/state"
)

// A difusor that acknowledges cut 4 while its site answers 403 on the
// pointer is "acked, not served", counts against the exit code, and the
// table grows a SERVED column; a check older than the ack flags nothing.
func TestAckedNotServed(t *testing.T) {
	src, now := fixture(t)
	ctx := context.Background()
	for _, s := range []state.Served{
		{Target: "el-sol", At: now, HTTPErrors: 1, Problem: "403 on json/main.json"},
		{Target: "tv-azteca", At: now, Seq: 4, CutID: "20240603_013000", OK: true, Checked: 30},
		{Target: "la-jornada", At: now.Add(-time.Hour), Seq: 2, CutID: "20240603_011000", OK: true},
	} {
		if err := src.DB.AddServed(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Build(ctx, src, now)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Target{}
	for _, tg := range v.Targets {
		by[tg.Name] = tg
	}
	if s := by["el-sol"]; !s.NotServed || s.State != StateNotServed || s.Detail != "acked, not served: 403 on json/main.json" {
		t.Errorf("el-sol: %+v", s)
	}
	if by["tv-azteca"].NotServed || by["la-jornada"].NotServed {
		t.Error("a site serving its acked cut, or checked before its ack, is flagged")
	}
	if v.Counts.NotServed != 1 {
		t.Errorf("not served count %d", v.Counts.NotServed)
	}
	if (&View{Counts: Counts{NotServed: 1}}).AllWithinMaxLag() {
		t.Error("a target acked but not served does not count as lag")
	}
	var b bytes.Buffer
	v.WriteTable(&b, time.UTC)
	out := b.String()
	for _, want := range []string{"SERVED", "acked, not served: 403 on json/main.json", "4 20240603_013000  4 20240603_013000", "none"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestServedMetrics(t *testing.T) {
	src, now := fixture(t)
	ctx := context.Background()
	src.DB.AddServed(ctx, state.Served{Target: "el-sol", At: now, HTTPErrors: 2, Mismatches: 1, Problem: "403 on json/main.json"})
	src.DB.AddServed(ctx, state.Served{Target: "tv-azteca", At: now, Seq: 4, CutID: "20240603_013000", OK: true})
	reg := prometheus.NewRegistry()
	reg.MustRegister(&Collector{View: func(ctx context.Context) (*View, error) { return Build(ctx, src, now) }})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" && (l.GetValue() == "el-sol" || l.GetValue() == "tv-azteca") && len(m.GetLabel()) == 1 {
					got[f.GetName()+"/"+l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	for k, want := range map[string]float64{
		"prepcast_target_served_seq/tv-azteca": 4, "prepcast_target_served_ok/tv-azteca": 1, "prepcast_target_acked_not_served/tv-azteca": 0,
		"prepcast_target_served_seq/el-sol": 0, "prepcast_target_served_http_errors/el-sol": 2,
		"prepcast_target_served_mismatches/el-sol": 1, "prepcast_target_acked_not_served/el-sol": 1,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
}
