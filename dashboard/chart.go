package dashboard

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// CutPoint is when a cut was made.
type CutPoint struct {
	Seq     int64
	Created time.Time
}

// AckPoint is a difusor acknowledging a cut: the end of a successful push
// attempt.
type AckPoint struct {
	Target string
	Seq    int64
	At     time.Time
}

// History is what the lag chart is drawn from: the cuts of the night and
// every acknowledgement, in any order.
type History struct {
	Cuts []CutPoint
	Acks []AckPoint
}

// chartSamples is the number of points of a lag line.
const chartSamples = 120

// lagSeries returns a target's lag in seconds at n instants evenly spread
// from from to to: the time since the first cut it lacked was made, or 0
// when it held the latest cut. cuts are sorted by Seq; acks are the
// target's, sorted by At.
func lagSeries(cuts []CutPoint, acks []AckPoint, from, to time.Time, n int) []float64 {
	out := make([]float64, n)
	ci, ai := 0, 0
	var latest, acked int64
	for i := range n {
		t := from
		if n > 1 {
			t = from.Add(time.Duration(int64(to.Sub(from)) * int64(i) / int64(n-1)))
		}
		for ci < len(cuts) && !cuts[ci].Created.After(t) {
			latest = max(latest, cuts[ci].Seq)
			ci++
		}
		for ai < len(acks) && !acks[ai].At.After(t) {
			acked = max(acked, acks[ai].Seq)
			ai++
		}
		if latest > acked {
			// The first cut after the acknowledged one.
			k := sort.Search(len(cuts), func(j int) bool { return cuts[j].Seq > acked })
			if k < len(cuts) {
				out[i] = max(0, t.Sub(cuts[k].Created).Seconds())
			}
		}
	}
	return out
}

// chart is one difusor's lag line, ready for the template.
type chart struct {
	Width, Height int
	Path          string  // the lag line, SVG path data
	Area          string  // the area under it
	MaxLagY       float64 // y of the max_lag line; < 0 when off the chart
	Over          bool    // the lag is over max_lag now
	Label         string  // what the chart shows, in words (for screen readers)
	Empty         bool
}

// newChart draws lags (seconds) into a width×height box. The y axis runs
// from 0 to the larger of 1.5×maxLag and the highest lag, so the max_lag
// line sits at the same height on every row unless a lag exceeds it.
func newChart(lags []float64, maxLag float64, width, height int) chart {
	c := chart{Width: width, Height: height, MaxLagY: -1}
	if len(lags) < 2 {
		c.Empty = true
		return c
	}
	top := 1.5 * maxLag
	for _, l := range lags {
		top = max(top, l)
	}
	if top <= 0 {
		top = 1
	}
	const pad = 1.0
	h := float64(height) - 2*pad
	y := func(v float64) float64 { return pad + h - v/top*h }
	x := func(i int) float64 { return float64(i) * float64(width) / float64(len(lags)-1) }
	var p strings.Builder
	for i, l := range lags {
		cmd := "L"
		if i == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&p, "%s%.1f %.1f ", cmd, x(i), y(l))
	}
	c.Path = strings.TrimSpace(p.String())
	c.Area = fmt.Sprintf("%s L%.1f %.1f L0 %.1f Z", c.Path, x(len(lags)-1), y(0), y(0))
	if maxLag > 0 {
		c.MaxLagY = y(maxLag)
	}
	c.Over = maxLag > 0 && lags[len(lags)-1] > maxLag
	return c
}
