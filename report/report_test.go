package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

func page() *Page {
	base := time.Date(2024, 6, 3, 2, 0, 0, 0, time.UTC) // 20:00 on 2 June in Mexico City
	var cuts []*packager.CutInfo
	for i := int64(1); i <= 3; i++ {
		cuts = append(cuts, &packager.CutInfo{Seq: i, ID: "20240602_" + []string{"2000", "2010", "2020"}[i-1], Created: base.Add(time.Duration(i-1) * 10 * time.Minute)})
	}
	hist := []state.Served{
		{Target: "diario", At: base.Add(11 * time.Minute), Seq: 2, CutID: "20240602_2010", OK: true, Checked: 1234},
		{Target: "diario", At: base.Add(21 * time.Minute), Seq: 3, CutID: "20240602_2020", OK: true, Checked: 22000},
		{Target: "uni", At: base.Add(21 * time.Minute), Seq: 2, CutID: "20240602_2010", OK: true, Checked: 40},
		{Target: "tv", At: base.Add(21 * time.Minute), Seq: 0, HTTPErrors: 1, Mismatches: 1, Problem: "403 on json/main.json"},
	}
	sites := []Site{{"diario", "https://prep.diario.example/"}, {"uni", "https://prep.uni.example/"}, {"tv", "https://tv.example/"}, {"nuevo<script>", ""}}
	return Build(base.Add(22*time.Minute), base, "SHA256:abcd", cuts, sites, hist)
}

func TestPageBothLanguages(t *testing.T) {
	p := page()
	es, err := Render(p, i18n.ES)
	if err != nil {
		t.Fatal(err)
	}
	en, err := Render(p, i18n.EN)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<html lang="es-MX">`, "Estado de los difusores del PREP",
		"2 de junio de 2024, 20:22 h (tiempo del centro)", // generated
		"Sirve exactamente el corte firmado", "Sirve un corte firmado anterior", "Lo que sirve no coincide con el corte firmado",
		"Aún no verificado", "1 corte, 2 min 00 s", "22,000 archivos revisados", "SHA256:abcd", "<svg", `href="https://prep.diario.example/"`,
		"nuevo&lt;script&gt;",
	} {
		if !strings.Contains(string(es), want) {
			t.Errorf("Spanish page lacks %q", want)
		}
	}
	for _, want := range []string{`<html lang="en">`, "PREP difusores status", "June 2, 2024, 20:22 (central Mexico time)", "Serves exactly the signed cut", "22,000 files checked"} {
		if !strings.Contains(string(en), want) {
			t.Errorf("English page lacks %q", want)
		}
	}
	for _, page := range [][]byte{es, en} {
		s := string(page)
		if strings.Contains(s, "<script") || strings.Contains(s, "ZgotmplZ") || strings.Contains(s, "[report.") {
			t.Errorf("page has a script, an unsafe value or a missing message")
		}
		if strings.Contains(s, "http://") && !strings.Contains(s, `xmlns="http://www.w3.org/2000/svg"`) || strings.Contains(s, "<link") {
			t.Error("page loads an external asset")
		}
	}
}

func TestWriteJSON(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, page(), i18n.ES); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got Page
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Schema != Schema || got.Fingerprint != "SHA256:abcd" || len(got.Difusores) != 4 || got.Latest.Seq != 3 {
		t.Fatalf("status.json: %+v", got)
	}
	want := map[string]string{"diario": ResultOK, "uni": ResultBehind, "tv": ResultDiffers, "nuevo<script>": ResultUnchecked}
	for _, d := range got.Difusores {
		if d.Result != want[d.Name] {
			t.Errorf("%s: %s, want %s", d.Name, d.Result, want[d.Name])
		}
	}
	if d := got.Difusores[1]; d.LagCuts != 1 || d.LagSeconds != 120 || len(got.Difusores[0].History) != 2 {
		t.Errorf("uni lag %d cuts %v s; diario history %d", d.LagCuts, d.LagSeconds, len(got.Difusores[0].History))
	}
	if _, err := os.Stat(filepath.Join(dir, "index.html")); err != nil {
		t.Error(err)
	}
}
