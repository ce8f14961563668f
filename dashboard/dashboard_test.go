package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/status"
)

var night = time.Date(2024, 6, 3, 2, 0, 0, 0, time.UTC) // 20:00 in Puebla

// testView has 30 difusores: one failing with a hostile error, one pushing,
// the others up to date.
func testView(now time.Time) *status.View {
	v := &status.View{Schema: status.Schema, Generated: now, MaxLagSeconds: 900,
		Latest: &status.Cut{Seq: 8, ID: "20240602_214500", Created: night.Add(105 * time.Minute)}}
	for i := 1; i <= 30; i++ {
		t := status.Target{Name: fmt.Sprintf("difusor-%02d", i), AckedSeq: 8, AckedID: "20240602_214500", AckedAt: now, State: status.StateOK, Detail: "ok"}
		switch i {
		case 1:
			t.AckedSeq, t.AckedID, t.LagCuts, t.LagSeconds, t.Behind = 5, "20240602_210000", 3, 1800, true
			t.State, t.LastError = status.StateFailing, "push cut 8 (20240602_214500) to difusor-01: sftp difusor-01: connect 127.0.0.1:22: <script>alert(1)</script> HOST KEY CHANGED\nsecond line"
		case 2:
			t.AckedSeq, t.LagCuts, t.LagSeconds = 7, 1, 60
			t.State, t.BytesDone, t.BytesTotal, t.RateBps = status.StatePushing, 40<<20, 100<<20, 12e6
		}
		v.Targets = append(v.Targets, t)
	}
	v.Counts = status.Counts{Targets: 30, Acked: 28, Pushing: 1, Failing: 1, Behind: 1}
	return v
}

func testHistory() History {
	var h History
	for s := int64(1); s <= 8; s++ {
		h.Cuts = append(h.Cuts, CutPoint{Seq: s, Created: night.Add(time.Duration(s-1) * 15 * time.Minute)})
		for i := 1; i <= 30; i++ {
			if i == 1 && s > 5 {
				continue
			}
			h.Acks = append(h.Acks, AckPoint{Target: fmt.Sprintf("difusor-%02d", i), Seq: s, At: night.Add(time.Duration(s-1)*15*time.Minute + 20*time.Second)})
		}
	}
	return h
}

func newTestServer(t *testing.T) *httptest.Server {
	now := night.Add(2 * time.Hour)
	h := New(Options{
		View:     func(context.Context) (*status.View, error) { return testView(now), nil },
		History:  func(context.Context) (History, error) { return testHistory(), nil },
		Next:     func(time.Time) time.Time { return night.Add(120 * time.Minute) },
		Now:      func() time.Time { return now },
		Interval: 20 * time.Millisecond,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The page lists every difusor, the latest and next cut, marks the lagging
// one, escapes what came from a difusor, names no other origin, and sends
// the security headers.
func TestPageShowsEveryDifusorEscaped(t *testing.T) {
	srv := newTestServer(t)
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for i := 1; i <= 30; i++ {
		if !strings.Contains(body, fmt.Sprintf(`data-difusor="difusor-%02d"`, i)) {
			t.Errorf("difusor-%02d is not listed", i)
		}
	}
	for _, want := range []string{
		`<html lang="es-MX">`, "Último corte: 8 (20240602_214500)", "Próximo ciclo: 22:00:00",
		`class="st-failing lagging over" data-difusor="difusor-01"`, "3 cortes · 30 min 00 s", "sobre el máximo",
		"connect 127.0.0.1:22: &lt;script&gt;alert(1)&lt;/script&gt; HOST KEY CHANGED …", // the cause, escaped
		`<progress max="100" value="40">`, "40.0 MiB de 100.0 MiB",
		`<svg class="chart over"`, `<line class="max"`,
		`<noscript><meta http-equiv="refresh" content="15"></noscript>`, // readable without JavaScript
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Error("a difusor's error reached the page unescaped")
	}
	if strings.Contains(body, "Corte servido") {
		t.Error("a served-cut column without served data")
	}
	for _, origin := range []string{"http://", "https://", "//cdn", "@import"} {
		if strings.Contains(body, origin) {
			t.Errorf("page refers to another origin: %q", origin)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	if _, en := get(t, srv.URL+"/?lang=en"); !strings.Contains(en, "Latest cut: 8 (20240602_214500)") || !strings.Contains(en, `<html lang="en">`) {
		t.Error("?lang=en does not give the English page")
	}
}

// Read-only: other methods get 405 naming GET and HEAD; unknown paths 404.
func TestReadOnly(t *testing.T) {
	srv := newTestServer(t)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		req, _ := http.NewRequest(m, srv.URL+"/", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %s, Allow %q", m, resp.Status, resp.Header.Get("Allow"))
		}
	}
	resp, err := http.Head(srv.URL + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD /: %v %v", resp, err)
	}
	if resp, _ := get(t, srv.URL+"/nope"); resp.StatusCode != 404 {
		t.Errorf("GET /nope: %s", resp.Status)
	}
	for _, p := range []string{"/dashboard.css", "/dashboard.js"} {
		resp, body := get(t, srv.URL+p)
		if resp.StatusCode != 200 || len(body) == 0 || strings.Contains(body, "http") {
			t.Errorf("%s: %s (%d bytes)", p, resp.Status, len(body))
		}
	}
}

// The event stream sends the live part of the page, rendered like the page.
func TestEventsStreamTheLivePart(t *testing.T) {
	srv := newTestServer(t)
	resp, err := http.Get(srv.URL + "/events?lang=en")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var event string
	var data []string
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "event: "):
			event = strings.TrimPrefix(l, "event: ")
		case strings.HasPrefix(l, "data: "):
			data = append(data, strings.TrimPrefix(l, "data: "))
		case l == "" && event == "update":
			html := strings.Join(data, "\n")
			if !strings.Contains(html, "Latest cut: 8") || strings.Count(html, "data-difusor=") != 30 || strings.Contains(html, "<html") {
				t.Fatalf("update event:\n%s", html)
			}
			return
		}
	}
	t.Fatalf("no update event: %v", sc.Err())
}

// When the status carries the served cut (status's "served", once a public
// site was checked), a SERVED column appears and flags a difusor that
// serves another cut than it acknowledged, or whose site had a problem.
func TestServedColumnWhenStatusCarriesIt(t *testing.T) {
	for _, form := range []string{`"served": {"seq": %d, "id": "x%d", "ok": true}`} {
		var s snapshot
		js := `{"max_lag_seconds": 900, "targets": [` +
			`{"name": "a", "acked_seq": 4, "state": "ok", ` + fmt.Sprintf(form, 4, 4) + `},` +
			`{"name": "b", "acked_seq": 4, "state": "ok", ` + fmt.Sprintf(form, 3, 3) + `}]}`
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatal(err)
		}
		p := build(&s, History{}, time.Time{}, i18n.EN, night)
		if !p.HasServed || !p.Rows[0].ServedOK || p.Rows[1].ServedOK || p.Rows[1].Served != "3 · x3" {
			t.Fatalf("%s: served %v, rows %+v", form, p.HasServed, p.Rows)
		}
		var b strings.Builder
		if err := tmpl.ExecuteTemplate(&b, "live", p); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "Served cut") || !strings.Contains(b.String(), `class="served-off">3 · x3`) {
			t.Fatalf("no served column:\n%s", b.String())
		}
	}
}

// The lag line follows the cuts and acknowledgements: 0 while a difusor
// keeps up, growing from the first cut it lacks.
func TestLagSeries(t *testing.T) {
	h := testHistory()
	var acks []AckPoint
	for _, a := range h.Acks {
		if a.Target == "difusor-01" {
			acks = append(acks, a)
		}
	}
	from, to := night, night.Add(2*time.Hour)
	lags := lagSeries(h.Cuts, acks, from, to, 9) // every 15 minutes
	// Cut 6 (the first it lacks) was made at +75 min.
	want := []float64{0, 0, 0, 0, 0, 0, 900, 1800, 2700}
	for i := range want {
		if lags[i] != want[i] {
			t.Fatalf("lags %v, want %v", lags, want)
		}
	}
	c := newChart(lags, 900, 240, 26)
	if !c.Over || c.Empty || !strings.HasPrefix(c.Path, "M0.0 ") || c.MaxLagY < 0 {
		t.Fatalf("chart %+v", c)
	}
}
