// Package report writes the public status page of the difusores: for each
// one, its site, the cut its public site serves, how far that is behind the
// latest cut, when it was last verified and the results over the night, with
// the institute's key fingerprint — a static page (index.html and
// status.json, no external assets, no JavaScript) the institute publishes.
//
// Every word comes from internal/i18n ("public status page"); the HTML is
// made with html/template, so nothing recorded from a site can inject markup.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/prepcast/prepcast/internal/atomicfile"
	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

// Schema names the layout of status.json.
const Schema = "prepcast-public-status/1"

// Results of one verification, for the page and its JSON.
const (
	ResultOK          = "ok"          // the latest signed cut, exactly
	ResultBehind      = "behind"      // an earlier signed cut, exactly
	ResultDiffers     = "differs"     // not exactly a signed cut
	ResultUnreachable = "unreachable" // no answer
	ResultUnchecked   = "unchecked"   // no verification yet
)

// Page is the data of the page, and its JSON form (status.json).
type Page struct {
	Schema      string     `json:"schema"`
	Generated   time.Time  `json:"generated"`
	Fingerprint string     `json:"key_fingerprint"`
	Latest      *Cut       `json:"latest"`
	Since       time.Time  `json:"history_since"`
	Difusores   []Difusor  `json:"difusores"`
	cuts        []Cut      // for lag
	lang        i18n.Lang  //
	window      [2]float64 // history window, unix seconds
}

// Cut is a cut of the store.
type Cut struct {
	Seq     int64     `json:"seq"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// Difusor is one line of the page.
type Difusor struct {
	Name       string    `json:"name"`
	URL        string    `json:"url"`
	Result     string    `json:"result"`
	ServedSeq  int64     `json:"served_seq"`
	ServedID   string    `json:"served_id,omitempty"`
	LagCuts    int64     `json:"lag_cuts"`
	LagSeconds float64   `json:"lag_seconds"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	Files      int       `json:"files_checked"`
	Mismatches int       `json:"mismatches"`
	HTTPErrors int       `json:"http_errors"`
	History    []Check   `json:"history"`
}

// Check is one verification in a difusor's history.
type Check struct {
	At     time.Time `json:"at"`
	Seq    int64     `json:"seq"`
	Result string    `json:"result"`
}

// Site names a difusor and its public URL.
type Site struct{ Name, URL string }

// Build makes the page at now from the store's cuts, the sites in config
// order and the verifications recorded since since (oldest first).
func Build(now, since time.Time, fingerprint string, cuts []*packager.CutInfo, sites []Site, history []state.Served) *Page {
	p := &Page{Schema: Schema, Generated: now.UTC(), Fingerprint: fingerprint, Since: since.UTC(), Difusores: []Difusor{}}
	for _, c := range cuts {
		p.cuts = append(p.cuts, Cut{Seq: c.Seq, ID: c.ID, Created: c.Created})
	}
	if n := len(p.cuts); n > 0 {
		l := p.cuts[n-1]
		p.Latest = &l
	}
	byName := map[string][]state.Served{}
	for _, s := range history {
		byName[s.Target] = append(byName[s.Target], s)
	}
	for _, site := range sites {
		d := Difusor{Name: site.Name, URL: site.URL, Result: ResultUnchecked, History: []Check{}}
		hist := byName[site.Name]
		sort.SliceStable(hist, func(i, j int) bool { return hist[i].At.Before(hist[j].At) })
		for _, s := range hist {
			d.History = append(d.History, Check{At: s.At.UTC(), Seq: s.Seq, Result: p.result(s)})
		}
		if n := len(hist); n > 0 {
			last := hist[n-1]
			d.Result, d.ServedSeq, d.ServedID, d.LastCheck = p.result(last), last.Seq, last.CutID, last.At.UTC()
			d.Files, d.Mismatches, d.HTTPErrors = last.Checked, last.Mismatches, last.HTTPErrors
			if p.Latest != nil && last.OK && last.Seq < p.Latest.Seq {
				d.LagCuts = p.Latest.Seq - last.Seq
				for _, c := range p.cuts {
					if c.Seq > last.Seq {
						d.LagSeconds = max(0, now.Sub(c.Created).Seconds())
						break
					}
				}
			}
		}
		p.Difusores = append(p.Difusores, d)
	}
	return p
}

// result classifies one verification against the cuts of the store.
func (p *Page) result(s state.Served) string {
	switch {
	case s.OK && p.Latest != nil && s.Seq >= p.Latest.Seq:
		return ResultOK
	case s.OK:
		return ResultBehind
	case s.Seq == 0 && s.Mismatches == 0 && s.HTTPErrors > 0:
		return ResultUnreachable
	}
	return ResultDiffers
}

// Write writes index.html (in lang) and status.json into dir, each
// replaced atomically, so a web server never serves half a page.
func Write(dir string, p *Page, lang i18n.Lang) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	html, err := Render(p, lang)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, "status.json"), append(js, '\n'), 0o644, false); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, "index.html"), html, 0o644, false); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Render returns the page's HTML in lang.
func Render(p *Page, lang i18n.Lang) ([]byte, error) {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, view{p, lang}); err != nil {
		return nil, fmt.Errorf("report: render: %w", err)
	}
	return b.Bytes(), nil
}
