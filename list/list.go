// Package list writes the public list of official difusores: a static HTML
// page, with no external assets, where each difusor's logo (embedded as a
// data: URI) links to its publication site. Every word comes from the i18n
// catalogue; every value from the config is escaped by html/template.
package list

import (
	"encoding/base64"
	"html/template"
	"io"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
)

// Entry is one difusor in the list.
type Entry struct {
	Name        string    // shown name
	URL         string    // the difusor's publication site; http or https
	Logo        []byte    // a checked PNG (config.ReadLogo); nil shows the name alone
	Contact     string    // optional
	LastPassed  time.Time // the latest check that passed; zero if none
	CheckPassed bool      // whether the latest check passed
}

// Page is what [Write] renders.
type Page struct {
	Lang       i18n.Lang
	Entries    []Entry
	Generated  time.Time
	PassedOnly bool // the page says only difusores whose last check passed are listed
}

type viewEntry struct {
	Name, Contact, Passed, Visit string
	URL                          string       // sanitised by html/template: only http(s) survive
	Logo                         template.URL // data:image/png;base64,...
	HasLogo                      bool
}

// Write renders p as one HTML document.
func Write(w io.Writer, p Page) error {
	l := p.Lang
	var es []viewEntry
	for _, e := range p.Entries {
		v := viewEntry{Name: e.Name, Contact: e.Contact, URL: e.URL, Visit: l.T("list.visit", e.Name)}
		if len(e.Logo) > 0 {
			v.HasLogo = true
			v.Logo = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.Logo))
		}
		if !e.LastPassed.IsZero() {
			v.Passed = l.T("list.last_passed", l.Date(e.LastPassed))
		}
		es = append(es, v)
	}
	return page.Execute(w, map[string]any{
		"Tag":        l.Tag(),
		"Title":      l.T("list.title"),
		"Intro":      l.T("list.intro"),
		"Count":      l.T("list.count", l.Int(int64(len(es)))),
		"Empty":      l.T("list.empty"),
		"ContactW":   l.T("list.contact"),
		"PassedOnly": p.PassedOnly,
		"PassedNote": l.T("list.passed_only"),
		"Generated":  l.T("list.generated", l.Date(p.Generated)),
		"Entries":    es,
	})
}

var page = template.Must(template.New("list").Parse(`<!DOCTYPE html>
<html lang="{{.Tag}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:64rem;padding:1rem;color:#222}
h1{font-size:1.6rem}
ul{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem}
li{border:1px solid #ddd;border-radius:.5rem;padding:1rem;text-align:center}
li img{max-width:100%;max-height:8rem;object-fit:contain}
li .name{display:block;font-weight:600;margin-top:.5rem}
li small{display:block;color:#555;margin-top:.25rem}
footer{color:#555;font-size:.9rem;margin-top:2rem}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Intro}}</p>
{{if .PassedOnly}}<p>{{.PassedNote}}</p>{{end}}
<p>{{.Count}}</p>
{{if .Entries}}<ul>
{{range .Entries}}<li><a href="{{.URL}}" rel="noopener" title="{{.Visit}}">{{if .HasLogo}}<img src="{{.Logo}}" alt="{{.Name}}">{{end}}<span class="name">{{.Name}}</span></a>
{{if .Contact}}<small>{{$.ContactW}}: {{.Contact}}</small>{{end}}{{if .Passed}}<small>{{.Passed}}</small>{{end}}</li>
{{end}}</ul>{{else}}<p>{{.Empty}}</p>{{end}}
<footer>{{.Generated}}</footer>
</body>
</html>
`))
