package report

import (
	"html/template"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
)

// view is what the template sees: the page and the reader's language.
type view struct {
	*Page
	L i18n.Lang
}

func (v view) T(key string, args ...any) string { return v.L.T(key, args...) }
func (v view) Date(t time.Time) string          { return v.L.Date(t) }
func (v view) Int(n int64) string               { return v.L.Int(n) }
func (v view) IntN(n int) string                { return v.L.Int(int64(n)) }

// Lag says how far a difusor's served cut is behind the latest.
func (v view) Lag(d Difusor) string {
	switch {
	case d.Result == ResultUnchecked || d.ServedSeq == 0:
		return v.T("report.none")
	case d.LagCuts == 0:
		return v.T("report.lag.none")
	case d.LagCuts == 1:
		return v.T("report.lag.cut", v.L.Duration(time.Duration(d.LagSeconds)*time.Second))
	}
	return v.T("report.lag.cuts", v.L.Int(d.LagCuts), v.L.Duration(time.Duration(d.LagSeconds)*time.Second))
}

// Result is the words for a result.
func (v view) Result(r string) string { return v.T("report.result." + r) }

// colors of the results in the chart and the legend.
var colors = map[string]string{
	ResultOK: "#2e7d32", ResultBehind: "#f9a825", ResultDiffers: "#c62828", ResultUnreachable: "#9e9e9e", ResultUnchecked: "#e0e0e0",
}

func (v view) Color(r string) string { return colors[r] }

// chartWidth and chartHeight size each difusor's history chart.
const chartWidth, chartHeight = 360, 18

// bar is one verification in a chart.
type bar struct {
	X, W  int
	Color string
	Title string
}

// Bars places a difusor's verifications on the page's time window.
func (v view) Bars(d Difusor) []bar {
	from, to := v.Since, v.Generated
	span := to.Sub(from)
	if span <= 0 {
		return nil
	}
	out := make([]bar, 0, len(d.History))
	for _, c := range d.History {
		x := int(float64(chartWidth-3) * float64(c.At.Sub(from)) / float64(span))
		x = min(max(x, 0), chartWidth-3)
		title := v.L.Date(c.At) + " · " + v.Result(c.Result)
		if c.Seq > 0 {
			title += " · " + v.L.Int(c.Seq)
		}
		out = append(out, bar{X: x, W: 3, Color: colors[c.Result], Title: title})
	}
	return out
}

func (v view) ChartW() int { return chartWidth }
func (v view) ChartH() int { return chartHeight }

// Legend lists the chart's colours.
func (v view) Legend() []bar {
	var out []bar
	for _, r := range []string{ResultOK, ResultBehind, ResultDiffers, ResultUnreachable} {
		out = append(out, bar{Color: colors[r], Title: v.T("report.legend." + r)})
	}
	return out
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="{{.L.Tag}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.T "report.title"}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#212121;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.25rem}
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.95rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e0e0e0;vertical-align:middle}
th{background:#f5f5f5}
.dot{display:inline-block;width:.75rem;height:.75rem;border-radius:50%;margin-right:.4rem;vertical-align:middle}
.small{color:#616161;font-size:.85rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
.legend span{margin-right:1rem;white-space:nowrap}
</style>
</head>
<body>
<h1>{{.T "report.title"}}</h1>
<p>{{.T "report.intro"}}</p>
<p class="small">{{.T "report.generated" (.Date .Generated)}}</p>
{{if .Latest}}<p>{{.T "report.latest" (.Int .Latest.Seq) .Latest.ID (.Date .Latest.Created)}}</p>{{else}}<p>{{.T "report.nocut"}}</p>{{end}}
<p>{{.T "report.key" ""}}<code>{{.Fingerprint}}</code><br><span class="small">{{.T "report.key.how"}}</span></p>
<table>
<thead><tr><th>{{.T "report.col.difusor"}}</th><th>{{.T "report.col.served"}}</th><th>{{.T "report.col.lag"}}</th><th>{{.T "report.col.result"}}</th><th>{{.T "report.col.checked"}}</th><th>{{.T "report.col.history"}}</th></tr></thead>
<tbody>
{{- range .Difusores}}
<tr>
<td>{{if .URL}}<a href="{{.URL}}" rel="nofollow noopener">{{.Name}}</a>{{else}}{{.Name}}{{end}}</td>
<td>{{if .ServedSeq}}{{$.Int .ServedSeq}} <span class="small">{{.ServedID}}</span>{{else}}{{$.T "report.none"}}{{end}}</td>
<td>{{$.Lag .}}</td>
<td><span class="dot" style="background:{{$.Color .Result}}"></span>{{$.Result .Result}}{{if ne .Result "unchecked"}}<br><span class="small">{{$.T "report.files" ($.IntN .Files)}}{{if .Mismatches}} · {{$.T "report.mismatches" ($.IntN .Mismatches)}}{{end}}{{if .HTTPErrors}} · {{$.T "report.httperrors" ($.IntN .HTTPErrors)}}{{end}}</span>{{end}}</td>
<td>{{if .LastCheck.IsZero}}{{$.T "report.none"}}{{else}}{{$.Date .LastCheck}}{{end}}</td>
<td><svg xmlns="http://www.w3.org/2000/svg" width="{{$.ChartW}}" height="{{$.ChartH}}" viewBox="0 0 {{$.ChartW}} {{$.ChartH}}" role="img" aria-label="{{$.T "report.col.history"}}"><rect x="0" y="0" width="{{$.ChartW}}" height="{{$.ChartH}}" fill="#f5f5f5"/>{{range $.Bars .}}<rect x="{{.X}}" y="1" width="{{.W}}" height="16" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}</svg></td>
</tr>
{{- end}}
</tbody>
</table>
<p class="small">{{.T "report.history.caption" (.Date .Since)}}</p>
<p class="small legend">{{range .Legend}}<span><span class="dot" style="background:{{.Color}}"></span>{{.Title}}</span>{{end}}</p>
<p class="small">{{.T "report.method"}}</p>
<p class="small"><a href="status.json">{{.T "report.json"}}</a></p>
</body>
</html>
`))
