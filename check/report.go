package check

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/internal/termsafe"
)

// WriteText prints the result for the operator: per difusor a table of
// requirements, then the detail and fix of each row that did not pass.
// Every value is escaped: it may come from the difusor.
func (res *Result) WriteText(w io.Writer) error {
	for i, d := range res.Difusores {
		if i > 0 {
			fmt.Fprintln(w)
		}
		verdict := "PASS"
		if !d.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s  %s  (%s, %s)  %s: %d failed, %d warnings, %.1f s\n", termsafe.String(d.Name), termsafe.String(d.Address),
			termsafe.String(d.Root), termsafe.String(orDash(d.URL)), verdict, d.Fails, d.Warns, d.Seconds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  REQUIREMENT\tCALL\tMEASURED\tTHRESHOLD\tRESULT")
		for _, r := range d.Rows {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.ID, orDash(r.Call), termsafe.Clip(orDash(r.Value), 70), termsafe.Clip(orDash(r.Threshold), 50), r.Verdict)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, r := range d.Rows {
			if r.Verdict == Pass || (r.Detail == "" && r.Fix == "") {
				continue
			}
			fmt.Fprintf(w, "  %s %s: %s\n", r.Verdict, r.ID, termsafe.String(r.Detail))
			if r.Fix != "" {
				fmt.Fprintf(w, "      fix: %s\n", termsafe.String(r.Fix))
			}
		}
	}
	n := 0
	for _, d := range res.Difusores {
		if d.Passed {
			n++
		}
	}
	_, err := fmt.Fprintf(w, "\n%d of %d difusores pass the call's requirements\n", n, len(res.Difusores))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes the result as one JSON document (schema [Schema]).
func (res *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// DifusorDocument is the JSON of one difusor's report file.
type DifusorDocument struct {
	Schema     string     `json:"schema"`
	Generated  time.Time  `json:"generated"`
	Thresholds Thresholds `json:"thresholds"`
	Difusor
}

// WriteReports writes, for each difusor, a dated report in dir (created if
// missing): NAME-YYYYMMDD-HHMM.md in lang and NAME-YYYYMMDD-HHMM.json. It
// returns the files written.
func (res *Result) WriteReports(dir string, lang i18n.Lang) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report directory: %w", err)
	}
	stamp := res.Generated.In(i18n.Zone).Format("20060102-1504")
	var files []string
	for _, d := range res.Difusores {
		base := filepath.Join(dir, d.Name+"-"+stamp)
		doc, err := json.MarshalIndent(DifusorDocument{Schema: Schema, Generated: res.Generated, Thresholds: res.Thresholds, Difusor: d}, "", "  ")
		if err != nil {
			return files, err
		}
		if err := os.WriteFile(base+".json", append(doc, '\n'), 0o644); err != nil {
			return files, fmt.Errorf("write report: %w", err)
		}
		files = append(files, base+".json")
		var b strings.Builder
		res.markdown(&b, d, lang)
		if err := os.WriteFile(base+".md", []byte(b.String()), 0o644); err != nil {
			return files, fmt.Errorf("write report: %w", err)
		}
		files = append(files, base+".md")
	}
	return files, nil
}

// markdown writes one difusor's report: every word from the i18n
// catalogue, the measured values and technical details as measured.
func (res *Result) markdown(b *strings.Builder, d Difusor, l i18n.Lang) {
	name := d.DisplayName
	if name == "" {
		name = d.Name
	}
	fmt.Fprintf(b, "# %s\n\n", mdText(l.T("check.title", name)))
	fmt.Fprintf(b, "%s\n\n", l.T("check.intro"))
	fmt.Fprintf(b, "- **%s:** %s\n", l.T("check.date"), l.Date(d.Started))
	fmt.Fprintf(b, "- **%s:** %s\n", l.T("check.difusor"), mdText(d.Name))
	fmt.Fprintf(b, "- **%s:** `%s` (%s `%s`)\n", l.T("check.server"), mdCode(d.Address), l.T("check.root"), mdCode(d.Root))
	if d.URL != "" {
		fmt.Fprintf(b, "- **%s:** %s\n", l.T("check.site"), mdText(d.URL))
	}
	fmt.Fprintf(b, "- **%s:** %s\n\n", l.T("check.duration"), l.Duration(time.Duration(d.Seconds*float64(time.Second))))
	if d.Passed {
		fmt.Fprintf(b, "**%s**\n\n", l.T("check.summary.pass"))
	} else {
		fmt.Fprintf(b, "**%s**\n\n", l.T("check.summary.fail", d.Fails))
	}

	fmt.Fprintf(b, "## %s\n\n", l.T("check.section.call"))
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n|---|---|---|---|---|\n",
		l.T("check.col.call"), l.T("check.col.requirement"), l.T("check.col.measured"), l.T("check.col.threshold"), l.T("check.col.verdict"))
	callRows := slices.DeleteFunc(slices.Clone(d.Rows), func(r Row) bool { return r.Call == "" })
	slices.SortStableFunc(callRows, func(a, b Row) int { return strings.Compare(a.Call, b.Call) })
	for _, r := range callRows {
		res.mdRow(b, r, l)
	}
	fmt.Fprintf(b, "\n## %s\n\n", l.T("check.section.operation"))
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n|---|---|---|---|---|\n",
		l.T("check.col.call"), l.T("check.col.requirement"), l.T("check.col.measured"), l.T("check.col.threshold"), l.T("check.col.verdict"))
	for _, r := range d.Rows {
		if r.Call == "" {
			res.mdRow(b, r, l)
		}
	}
	var notes []Row
	for _, r := range d.Rows {
		if r.Verdict != Pass && (r.Detail != "" || r.Fix != "") {
			notes = append(notes, r)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(b, "\n## %s\n\n", l.T("check.section.details"))
		for _, r := range notes {
			fmt.Fprintf(b, "- **%s** (%s): %s", mdText(l.T("check.req."+r.ID)), l.T("check.verdict."+string(r.Verdict)), mdText(r.Detail))
			if r.Fix != "" {
				fix := r.Fix
				if id, ok := fixIDs[fix]; ok && l != i18n.EN {
					fix = l.T("check.fixtext." + id)
				}
				fmt.Fprintf(b, " — %s: %s", l.T("check.fix"), mdText(fix))
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(b, "\n%s\n", l.T("check.footer", l.Date(res.Generated), Schema))
}

func (res *Result) mdRow(b *strings.Builder, r Row, l i18n.Lang) {
	call := "—"
	if r.Call != "" {
		call = l.T("check.call_item", r.Call[:1], r.Call[1:])
	}
	value := r.Value
	if value == "" {
		value = "not measured"
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", call, mdText(l.T("check.req."+r.ID)), mdText(say(l, value)), mdText(say(l, orDash(r.Threshold))),
		l.T("check.verdict."+string(r.Verdict)))
}

// mdText escapes text for a Markdown table cell or paragraph: no HTML, no
// table breaks, no control characters.
func mdText(s string) string {
	s = termsafe.Clip(s, 600)
	r := strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "`", "'", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`)
	return r.Replace(s)
}

func mdCode(s string) string { return strings.ReplaceAll(termsafe.Clip(s, 200), "`", "'") }
