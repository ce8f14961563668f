// Package dashboard serves the operations room's live view of a publisher:
// one row per difusor with the cut it acknowledges, its lag in cuts and in
// time, the push in flight, its last error by its cause, the served cut when
// the status carries it, and a chart of its lag over the night; above them
// the latest cut and the next scheduled cycle.
//
// The page is rendered on the server (html/template, every value escaped;
// the charts are inline SVG) and is complete without JavaScript, which a
// <noscript> refresh then reloads every 15 s. With JavaScript it updates in
// place from a server-sent event stream (/events) that carries the same
// rendered HTML. It loads nothing from elsewhere (the room may be offline):
// its style sheet and script come from the same handler, and its
// Content-Security-Policy allows nothing else. It is read-only: GET and
// HEAD only, any other method gets 405. Words come from internal/i18n's
// "operations dashboard" section, Spanish by default.
package dashboard

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/status"
)

// Options is where the dashboard reads from. View is required.
type Options struct {
	// View returns the current status.
	View func(ctx context.Context) (*status.View, error)
	// History returns the night's cuts and acknowledgements for the lag
	// charts; nil draws no charts.
	History func(ctx context.Context) (History, error)
	// Next returns the next scheduled cycle after now; zero when none.
	Next func(now time.Time) time.Time
	// Lang is the default language; a page asks for another with ?lang=.
	Lang i18n.Lang
	// Interval is how often the event stream sends an update (default 2 s).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// MaxStreams bounds the event streams served at once; each reads the
// status every Interval.
const MaxStreams = 64

// Handler serves the dashboard.
type Handler struct {
	o       Options
	streams atomic.Int32
}

// New returns the dashboard handler. Mount it at "/": it serves "/",
// "/events", "/dashboard.css" and "/dashboard.js", and answers 404 for any
// other path.
func New(o Options) *Handler {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lang == "" {
		o.Lang = i18n.Default
	}
	return &Handler{o: o}
}

var (
	//go:embed page.html.tmpl
	pageSource string
	//go:embed dashboard.css
	css []byte
	//go:embed dashboard.js
	js []byte

	tmpl = template.Must(template.New("page").Parse(pageSource))
)

// csp allows the page its own style sheet, script and event stream, and
// nothing else: no other origin, no inline script or style, no frames.
const csp = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/":
		h.servePage(w, r)
	case "/events":
		h.serveEvents(w, r)
	case "/dashboard.css":
		hd.Set("Content-Type", "text/css; charset=utf-8")
		w.Write(css)
	case "/dashboard.js":
		hd.Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(js)
	default:
		http.NotFound(w, r)
	}
}

// lang returns the language a request asks for with ?lang=, or the default.
func (h *Handler) lang(r *http.Request) i18n.Lang {
	if q := r.URL.Query().Get("lang"); q != "" {
		if l, err := i18n.Parse(q); err == nil {
			return l
		}
	}
	return h.o.Lang
}

// render renders the whole page (or only the live part) in lang.
func (h *Handler) render(ctx context.Context, lang i18n.Lang, part string) ([]byte, error) {
	v, err := h.o.View(ctx)
	if err != nil {
		return nil, err
	}
	s, err := decode(v)
	if err != nil {
		return nil, err
	}
	var hist History
	if h.o.History != nil {
		if hist, err = h.o.History(ctx); err != nil {
			return nil, err
		}
	}
	now := h.o.Now()
	var next time.Time
	if h.o.Next != nil {
		next = h.o.Next(now)
	}
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, part, build(s, hist, next, lang, now)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	body, err := h.render(r.Context(), h.lang(r), "page")
	if err != nil {
		http.Error(w, "status unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(body)
}

// serveEvents streams the live part of the page as server-sent events:
// one "update" event whenever it changes (checked every Interval), and a
// comment every 15 s so that proxies keep the stream open.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	if h.streams.Add(1) > MaxStreams {
		h.streams.Add(-1)
		http.Error(w, "too many dashboards open", http.StatusServiceUnavailable)
		return
	}
	defer h.streams.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	lang := h.lang(r)
	fmt.Fprint(w, "retry: 3000\n\n")
	fl.Flush()
	var last []byte
	tick := time.NewTicker(h.o.Interval)
	defer tick.Stop()
	quiet := time.Now()
	for {
		body, err := h.render(r.Context(), lang, "live")
		switch {
		case err != nil:
			if r.Context().Err() != nil {
				return
			}
			fmt.Fprintf(w, "event: failure\ndata: %s\n\n", strings.ReplaceAll(template.HTMLEscapeString(err.Error()), "\n", " "))
		case !bytes.Equal(body, last):
			last = body
			w.Write([]byte("event: update\n"))
			for _, line := range bytes.Split(body, []byte("\n")) {
				w.Write([]byte("data: "))
				w.Write(line)
				w.Write([]byte("\n"))
			}
			w.Write([]byte("\n"))
			quiet = time.Now()
		case time.Since(quiet) > 15*time.Second:
			fmt.Fprint(w, ": keepalive\n\n")
			quiet = time.Now()
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}
