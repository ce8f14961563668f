package dashboard

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/status"
)

// snapshot is the status as the dashboard reads it: the JSON form of
// [status.View] (schema prepcast-status/1, whose fields are only ever
// added), so that fields added later, such as the served cut, show up
// without this package depending on how they are computed.
type snapshot struct {
	Latest *struct {
		Seq     int64     `json:"seq"`
		ID      string    `json:"id"`
		Created time.Time `json:"created"`
	} `json:"latest"`
	MaxLagSeconds float64 `json:"max_lag_seconds"`
	Counts        struct {
		Targets, Acked, Pushing, Retrying, Failing, Behind int
	} `json:"counts"`
	Targets []targetJSON `json:"targets"`
}

type targetJSON struct {
	Name       string    `json:"name"`
	AckedSeq   int64     `json:"acked_seq"`
	AckedID    string    `json:"acked_id"`
	AckedAt    time.Time `json:"acked_at"`
	LagCuts    int64     `json:"lag_cuts"`
	LagSeconds float64   `json:"lag_seconds"`
	Behind     bool      `json:"behind"`
	State      string    `json:"state"`
	Detail     string    `json:"detail"`
	LastError  string    `json:"last_error"`
	PushingSeq int64     `json:"pushing_seq"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	RateBps    float64   `json:"rate_bytes_per_second"`
	// The served cut: what the difusor's public site served when it was
	// last checked over HTTP (status's "served"); nil before any check.
	Served *struct {
		Seq     int64  `json:"seq"`
		ID      string `json:"id"`
		OK      bool   `json:"ok"`
		Problem string `json:"problem"`
	} `json:"served"`
}

// decode reads v through its JSON form.
func decode(v *status.View) (*snapshot, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// page is what the template renders.
type page struct {
	Lang      string // the html lang attribute
	Other     string // the query that switches language, "?lang=en"
	OtherName string
	OtherTag  string
	lang      i18n.Lang
	Title     string
	Latest    string // "" before the first cut
	Next      string
	Counts    string
	Updated   string
	HasServed bool
	Rows      []row
}

// row is one difusor.
type row struct {
	Name       string
	State      string // status state
	StateClass string // the state as a CSS class name
	StateText  string
	Acked      string
	AckedTitle string
	Lag        string
	Lagging    bool // lacks the latest cut
	Over       bool // over max_lag
	Push       string
	PushPct    int // 0-100, -1 when no push runs
	Served     string
	ServedOK   bool
	Error      string // the cause: first line, escaped
	ErrorFull  string // the whole text, for the tooltip
	Chart      chart
}

// Chart dimensions: wide enough to read a night, small enough for 30 rows
// on a 1080-pixel screen.
const chartWidth, chartHeight = 240, 22

// build turns a snapshot, the history and the schedule into a page in lang
// at now.
func build(s *snapshot, h History, next time.Time, lang i18n.Lang, now time.Time) *page {
	p := &page{Lang: lang.Tag(), lang: lang, Title: lang.T("dash.title"), OtherName: lang.T("dash.lang.other")}
	if lang == i18n.ES {
		p.Other, p.OtherTag = "?lang=en", i18n.EN.Tag()
	} else {
		p.Other, p.OtherTag = "?lang=es", i18n.ES.Tag()
	}
	dur := func(sec float64) string { return lang.Duration(time.Duration(sec * float64(time.Second))) }
	if s.Latest != nil {
		p.Latest = lang.T("dash.latest", lang.Int(s.Latest.Seq), s.Latest.ID, dur(max(0, now.Sub(s.Latest.Created).Seconds())))
	}
	if next.IsZero() {
		p.Next = lang.T("dash.next_none")
	} else {
		at := lang.Time(next)
		if next.Sub(now) > 12*time.Hour {
			at = lang.Date(next)
		}
		p.Next = lang.T("dash.next", at, dur(max(0, next.Sub(now).Seconds())))
	}
	c := s.Counts
	p.Counts = lang.T("dash.counts", lang.Int(int64(c.Targets)), lang.Int(int64(c.Acked)), lang.Int(int64(c.Pushing)),
		lang.Int(int64(c.Retrying)), lang.Int(int64(c.Failing)), lang.Int(int64(c.Behind)), dur(s.MaxLagSeconds))
	p.Updated = lang.T("dash.updated", lang.Time(now))

	cuts := append([]CutPoint(nil), h.Cuts...)
	sort.Slice(cuts, func(i, j int) bool { return cuts[i].Seq < cuts[j].Seq })
	acks := map[string][]AckPoint{}
	for _, a := range h.Acks {
		acks[a.Target] = append(acks[a.Target], a)
	}
	from := now
	if len(cuts) > 0 {
		from = cuts[0].Created
	}
	for _, t := range s.Targets {
		r := row{Name: termsafe.String(t.Name), State: t.State, StateClass: strings.ReplaceAll(t.State, " ", "-"), StateText: stateText(lang, t.State), PushPct: -1}
		r.Acked = lang.T("dash.acked.none")
		if t.AckedSeq > 0 {
			r.Acked = fmt.Sprintf("%s · %s", lang.Int(t.AckedSeq), t.AckedID)
			if !t.AckedAt.IsZero() {
				r.AckedTitle = lang.Date(t.AckedAt)
			}
		}
		r.Lagging, r.Over = t.LagCuts > 0, t.Behind
		switch {
		case t.LagCuts == 0:
			r.Lag = lang.T("dash.lag.none")
		case t.LagCuts == 1:
			r.Lag = lang.T("dash.lag.cut", dur(t.LagSeconds))
		default:
			r.Lag = lang.T("dash.lag.cuts", lang.Int(t.LagCuts), dur(t.LagSeconds))
		}
		r.Push = lang.T("dash.push.none")
		if t.State == status.StatePushing && t.BytesTotal > 0 {
			r.Push = lang.T("dash.push.progress", status.FormatBytes(t.BytesDone), status.FormatBytes(t.BytesTotal), status.FormatBytes(int64(t.RateBps)))
			r.PushPct = int(min(100, 100*t.BytesDone/max(1, t.BytesTotal)))
		}
		r.Served = lang.T("dash.served.none")
		switch {
		case t.Served != nil:
			p.HasServed = true
			r.Served, r.ServedOK = servedText(lang, t.Served.Seq, t.Served.ID, t.Served.Problem), t.Served.OK && t.Served.Problem == "" && t.Served.Seq == t.AckedSeq
		}
		r.Error = lang.T("dash.error.none")
		if t.LastError != "" && t.State != status.StateOK {
			r.Error = status.Cause(t.LastError)
			r.ErrorFull = termsafe.String(t.LastError)
		}
		lags := lagSeries(cuts, sortedAcks(acks[t.Name]), from, now, chartSamples)
		if len(cuts) == 0 {
			lags = nil
		}
		r.Chart = newChart(lags, s.MaxLagSeconds, chartWidth, chartHeight)
		cur := dur(0)
		if n := len(lags); n > 0 {
			cur = dur(lags[n-1])
		}
		r.Chart.Label = lang.T("dash.chart.label", r.Name, lang.Time(from), lang.Time(now), dur(s.MaxLagSeconds), cur)
		p.Rows = append(p.Rows, r)
	}
	return p
}

// T returns the page's words for key (see internal/i18n).
func (p *page) T(key string, args ...any) string { return p.lang.T(key, args...) }

func sortedAcks(a []AckPoint) []AckPoint {
	sort.Slice(a, func(i, j int) bool { return a[i].At.Before(a[j].At) })
	return a
}

func servedText(lang i18n.Lang, seq int64, id, errText string) string {
	if errText != "" {
		return status.Cause(errText)
	}
	if seq == 0 {
		return lang.T("dash.served.none")
	}
	return fmt.Sprintf("%s · %s", lang.Int(seq), termsafe.String(id))
}

func stateText(lang i18n.Lang, state string) string {
	key := map[string]string{
		status.StateOK: "dash.state.ok", status.StatePushing: "dash.state.pushing", status.StateRetrying: "dash.state.retrying",
		status.StateFailing: "dash.state.failing", status.StateInterrupted: "dash.state.interrupted",
		status.StateBehind: "dash.state.behind", status.StateNever: "dash.state.never",
	}[state]
	if key == "" {
		return termsafe.String(state)
	}
	return lang.T(key)
}
