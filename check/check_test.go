package check

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/i18n"
)

func TestEvalCacheControl(t *testing.T) {
	now := time.Now()
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			hd.Add(kv[i], kv[i+1])
		}
		return hd
	}
	cases := []struct {
		name   string
		status int
		header http.Header
		want   Verdict
		says   string
	}{
		{"exact", 200, h("Cache-Control", "no-cache, no-store, must-revalidate"), Pass, ""},
		{"other order and case, harmless extras", 200, h("Cache-Control", "Must-Revalidate, NO-STORE, no-cache, private, max-age=0"), Pass, ""},
		{"two header lines", 200, h("Cache-Control", "no-cache", "Cache-Control", "no-store, must-revalidate"), Pass, ""},
		{"missing", 200, h(), Fail, "missing no-cache, no-store, must-revalidate"},
		{"only no-cache", 200, h("Cache-Control", "no-cache"), Fail, "missing no-store, must-revalidate"},
		{"max-age", 200, h("Cache-Control", "no-cache, no-store, must-revalidate, max-age=600"), Fail, "max-age=600"},
		{"public", 200, h("Cache-Control", "public, no-cache, no-store, must-revalidate"), Fail, "public"},
		{"expires in the future", 200, h("Cache-Control", RequiredCacheControl, "Expires", now.Add(time.Hour).UTC().Format(http.TimeFormat)), Fail, "Expires"},
		{"expires in the past", 200, h("Cache-Control", RequiredCacheControl, "Expires", "Thu, 01 Jan 1970 00:00:01 GMT"), Pass, ""},
		{"not published yet", 404, h(), Warn, "not published yet"},
		{"404 with the rule", 404, h("Cache-Control", RequiredCacheControl), Pass, ""},
		{"forbidden", 403, h("Cache-Control", RequiredCacheControl), Fail, "HTTP 403"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := evalCacheControl(&webResponse{Status: c.status, Header: c.header})
			if r.Verdict != c.want || !strings.Contains(r.Detail, c.says) {
				t.Errorf("verdict %s detail %q; want %s saying %q", r.Verdict, r.Detail, c.want, c.says)
			}
			if r.Call != "2e" {
				t.Errorf("call = %q", r.Call)
			}
		})
	}
}

// TestEvalCertificate checks an HTTPS site: valid through the publication
// period passes; expiring before it, or not trusted, fails.
func TestEvalCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	notAfter := srv.Certificate().NotAfter
	now := time.Now()

	trusted := newWebClient(5*time.Second, pool)
	resp, err := trusted.get(context.Background(), srv.URL+"/json/main.json")
	if r := evalCertificate(resp, err, notAfter.Add(-24*time.Hour), now); r.Verdict != Pass {
		t.Errorf("valid certificate: %s %s", r.Verdict, r.Detail)
	}
	if r := evalCertificate(resp, err, notAfter.Add(24*time.Hour), now); r.Verdict != Fail || !strings.Contains(r.Detail, "before the publication period ends") {
		t.Errorf("certificate expiring before the end: %s %s", r.Verdict, r.Detail)
	}
	untrusted := newWebClient(5*time.Second, x509.NewCertPool())
	resp, err = untrusted.get(context.Background(), srv.URL+"/json/main.json")
	if r := evalCertificate(resp, err, now, now); r.Verdict != Fail || !strings.Contains(r.Detail, "not valid") {
		t.Errorf("untrusted certificate: %s %s", r.Verdict, r.Detail)
	}
}

// TestWebClientBoundsBody checks that a hostile site cannot make the check
// read an unbounded body.
func TestWebClientBoundsBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 64<<10)
		for i := 0; i < 64; i++ {
			if _, err := w.Write(b); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	_, err := newWebClient(5*time.Second, nil).get(context.Background(), srv.URL)
	if err == nil || !strings.Contains(err.Error(), "larger than 1024 KiB") {
		t.Errorf("err = %v", err)
	}
}

// TestMeasureUploadIsSustained uploads through a 20 MB/s link simulated
// with a token bucket that starts with a 4 MB burst: the figure is the
// link's rate, not the burst.
func TestMeasureUploadIsSustained(t *testing.T) {
	const link = 20e6
	lim := rate.NewLimiter(link, 4e6)
	put := func(ctx context.Context, i int, r io.Reader, size int64) error {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if werr := lim.WaitN(ctx, n); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	got, total, err := measureUpload(context.Background(), 2*time.Second, 4, put)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("measured %.1f MB/s, %.1f MB in all", got/1e6, float64(total)/1e6)
	if got < link*0.85 || got > link*1.15 {
		t.Errorf("measured %.1f MB/s through a %.0f MB/s link", got/1e6, link/1e6)
	}
}

// TestCatalogueNamesEveryRow: every row has a name in both languages.
func TestCatalogueNamesEveryRow(t *testing.T) {
	ids := []string{RowOS, RowWebServer, RowSSHReach, RowSSHHostKey, RowSSHAuth, RowSFTPExtensions, RowSFTPSessions, RowPushMode,
		RowFreeDisk, RowRetainedCuts, RowUploadRate, RowWriteRename, RowFileModes, RowCacheControl, RowHTTPSCert, RowClockSkew}
	for _, l := range []i18n.Lang{i18n.ES, i18n.EN} {
		for _, id := range ids {
			if s := l.T("check.req." + id); strings.HasPrefix(s, "[") {
				t.Errorf("%s: no name for row %s", l, id)
			}
		}
		for _, v := range []Verdict{Pass, Warn, Fail} {
			if s := l.T("check.verdict." + string(v)); strings.HasPrefix(s, "[") {
				t.Errorf("%s: no word for %s", l, v)
			}
		}
	}
}

// TestReportsNameTheCallsRequirements writes a report in each language and
// checks the call's wording, the date in tiempo del centro, the verdicts,
// and that hostile values cannot break the Markdown.
func TestReportsNameTheCallsRequirements(t *testing.T) {
	at := time.Date(2024, 5, 20, 16, 30, 0, 0, time.UTC) // 10:30 in Mexico City
	res := &Result{Schema: Schema, Generated: at, Difusores: []Difusor{{
		Name: "diario", DisplayName: "Diario Ejemplo", Address: "sftp.diario.example:22", Root: "/var/www/prep", URL: "https://prep.diario.example/",
		Started: at, Seconds: 17, Passed: false, Fails: 1,
		Rows: []Row{
			{ID: RowOS, Call: "2a", Verdict: Pass, Value: "Linux (Debian) — SSH-2.0-OpenSSH_9.2p1"},
			{ID: RowWebServer, Call: "2b", Verdict: Pass, Value: "nginx/1.22.1, HTTP 200"},
			{ID: RowFreeDisk, Call: "2c", Verdict: Pass, Value: "81.7 GB", Threshold: "≥ 20.0 GB"},
			{ID: RowUploadRate, Call: "2d", Verdict: Fail, Value: "12.3 MB/s", Threshold: "≥ 40.0 MB/s", Detail: "sustained over 15 s", Fix: "raise the bandwidth"},
			{ID: RowCacheControl, Call: "2e", Verdict: Pass, Value: "no-cache | <script>x</script>"},
			{ID: RowSSHAuth, Verdict: Pass, Value: "authenticated as prep"},
			{ID: RowWriteRename, Verdict: Pass, Value: "works"},
		},
	}}}
	dir := t.TempDir()
	for _, c := range []struct {
		lang  i18n.Lang
		words []string
	}{
		{i18n.ES, []string{"Sistema operativo", "Servidor web", "20 GB libres en disco", "40 MB/seg mínimo en el servicio de sftp o ssh",
			"Regla Cache-Control en json/main.json", "20 de mayo de 2024, 10:30 h (tiempo del centro)", "NO CUMPLE", "CUMPLE", "sección 2, inciso c)", "funciona"}},
		{i18n.EN, []string{"Operating system", "Web server", "20 GB of free disk", "At least 40 MB/s over the SFTP or SSH service",
			"May 20, 2024, 10:30 (central Mexico time)", "FAIL", "section 2, item c)", "works"}},
	} {
		sub := filepath.Join(dir, string(c.lang))
		files, err := res.WriteReports(sub, c.lang)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 || !strings.HasSuffix(files[0], "diario-20240520-1030.json") || !strings.HasSuffix(files[1], "diario-20240520-1030.md") {
			t.Fatalf("files %v", files)
		}
		md, _ := os.ReadFile(files[1])
		for _, w := range c.words {
			if !strings.Contains(string(md), w) {
				t.Errorf("%s report lacks %q:\n%s", c.lang, w, md)
			}
		}
		if c.lang == i18n.ES {
			last := -1
			for _, item := range []string{"inciso a)", "inciso b)", "inciso c)", "inciso d)", "inciso e)"} {
				i := strings.Index(string(md), item)
				if i < last {
					t.Errorf("the call's items are not in order: %s comes too early", item)
				}
				last = i
			}
		}
		if strings.Contains(string(md), "<script>") || strings.Contains(string(md), "no-cache | <") {
			t.Errorf("%s report carries a hostile value unescaped", c.lang)
		}
	}
}

// TestSpanishReportTranslatesPrepcastsWords: every value and threshold
// prepcast writes in English reads in Spanish in a Spanish report; what
// the difusor said (a banner, a header) stays as measured.
func TestSpanishReportTranslatesPrepcastsWords(t *testing.T) {
	tc := &config.Target{Mode: config.ModeSFTP}
	all := map[string]bool{"fsync@openssh.com": true, "statvfs@openssh.com": true}
	var phrases []string
	for _, r := range []Row{
		pushModeRow(tc, 16, 9, all),
		pushModeRow(tc, 16, 1, all),
		pushModeRow(tc, 16, 9, map[string]bool{}),
		pushModeRow(&config.Target{Mode: config.ModeExec, ApplyCommand: "prepcast apply --root /var/www/prep"}, 16, 9, all),
	} {
		phrases = append(phrases, r.Value)
	}
	for k := range fixedWords {
		phrases = append(phrases, k)
	}
	phrases = append(phrases, "authenticated as prep", "9 or more", "81.7 GB free", "valid until 2024-07-01 00:00 UTC",
		"HTTP 200, other bytes", "(no Server header), HTTP 200", "SSH banner from sftp.diario.example:22",
		"write, rename, delete in /var/www/prep", "9 (what prepcast uses)")
	for _, p := range phrases {
		es := say(i18n.ES, p)
		if es == p || strings.Contains(es, "[check.") {
			t.Errorf("not translated: %q -> %q", p, es)
		}
		if en := say(i18n.EN, p); en != p {
			t.Errorf("English changed: %q -> %q", p, en)
		}
	}
	if got := say(i18n.ES, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"); got != "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10" {
		t.Errorf("a banner was changed: %q", got)
	}
}

// TestFixesInBothLanguages: every fix a row suggests has its words in both
// catalogues, the English one the same as the operator sees.
func TestFixesInBothLanguages(t *testing.T) {
	for fix, id := range fixIDs {
		if en := i18n.EN.T("check.fixtext." + id); en != fix {
			t.Errorf("%s: English catalogue %q differs from the fix %q", id, en, fix)
		}
		if es := i18n.ES.T("check.fixtext." + id); es == fix || strings.HasPrefix(es, "[") {
			t.Errorf("%s: no Spanish fix (%q)", id, es)
		}
	}
	if !strings.Contains(fixSessions, fmt.Sprint(maxSessions)) {
		t.Errorf("the sessions fix %q does not say %d", fixSessions, maxSessions)
	}
}
