package list

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/internal/i18n"
)

type element struct {
	name  string
	attrs map[string]string
	text  string
}

// parse reads the page with an HTML-tolerant XML decoder and returns its
// elements in order; it fails the test on malformed markup.
func parse(t *testing.T, page []byte) []element {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	var out []element
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("the page does not parse: %v\n%s", err, page)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			e := element{name: tk.Name.Local, attrs: map[string]string{}}
			for _, a := range tk.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
		case xml.CharData:
			if len(out) > 0 {
				out[len(out)-1].text += string(tk)
			}
		}
	}
}

func logo(t *testing.T) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 40, 20))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestListPage checks the page in both languages: lang attribute, the
// catalogue's words, each logo embedded and linking to its site, no
// external asset, hostile names escaped and unsafe links neutralised.
func TestListPage(t *testing.T) {
	lg := logo(t)
	at := time.Date(2024, 5, 28, 18, 0, 0, 0, time.UTC)
	entries := []Entry{
		{Name: "Diario Ejemplo", URL: "https://prep.diario.example/", Logo: lg, Contact: "sistemas@diario.example", LastPassed: at, CheckPassed: true},
		{Name: `Radio <script>alert(1)</script> "Universidad"`, URL: "javascript:alert(1)"},
	}
	for _, c := range []struct {
		lang  i18n.Lang
		tag   string
		words []string
	}{
		{i18n.ES, "es-MX", []string{"Difusores oficiales del PREP", "2 difusores oficiales", "Verificado el 28 de mayo de 2024, 12:00 h (tiempo del centro)", "Contacto: sistemas@diario.example", "Solo se muestran"}},
		{i18n.EN, "en", []string{"Official PREP difusores", "2 official difusores", "Checked on May 28, 2024, 12:00 (central Mexico time)", "Contact: sistemas@diario.example"}},
	} {
		var b bytes.Buffer
		if err := Write(&b, Page{Lang: c.lang, Entries: entries, Generated: at, PassedOnly: true}); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		els := parse(t, b.Bytes())
		if els[0].name != "html" || els[0].attrs["lang"] != c.tag {
			t.Errorf("%s: first element %s lang=%q, want html lang=%q", c.lang, els[0].name, els[0].attrs["lang"], c.tag)
		}
		for _, w := range c.words {
			if !strings.Contains(page, w) {
				t.Errorf("%s: the page lacks %q", c.lang, w)
			}
		}
		var links []element
		var imgs []element
		for i, e := range els {
			switch e.name {
			case "a":
				links = append(links, e)
			case "img":
				imgs = append(imgs, e)
				if els[i-1].name != "a" || els[i-1].attrs["href"] != "https://prep.diario.example/" {
					t.Errorf("%s: the logo is not inside the link to its site", c.lang)
				}
			case "script", "link", "iframe", "object":
				t.Errorf("%s: the page has a <%s> element", c.lang, e.name)
			}
			for k, v := range e.attrs {
				if (k == "src" || k == "href") && (strings.HasPrefix(v, "//") || strings.HasPrefix(v, "http:") || (strings.HasPrefix(v, "https:") && k == "src")) {
					t.Errorf("%s: external asset %s=%q", c.lang, k, v)
				}
			}
		}
		if len(links) != 2 || len(imgs) != 1 {
			t.Fatalf("%s: %d links and %d images, want 2 and 1", c.lang, len(links), len(imgs))
		}
		src := imgs[0].attrs["src"]
		data, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, "data:image/png;base64,"))
		if !strings.HasPrefix(src, "data:image/png;base64,") || err != nil || !bytes.Equal(data, lg) {
			t.Errorf("%s: the logo is not embedded as the PNG's bytes (src %.40q)", c.lang, src)
		}
		if imgs[0].attrs["alt"] != "Diario Ejemplo" {
			t.Errorf("%s: alt %q", c.lang, imgs[0].attrs["alt"])
		}
		if href := links[1].attrs["href"]; strings.Contains(href, "javascript") {
			t.Errorf("%s: an unsafe link survived: %q", c.lang, href)
		}
		if strings.Contains(page, "<script>alert") {
			t.Errorf("%s: a hostile name is not escaped", c.lang)
		}
	}
}

func TestListPageEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, Page{Lang: i18n.ES, Generated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Aún no hay difusores en la lista.") {
		t.Errorf("empty list page:\n%s", b.String())
	}
	parse(t, b.Bytes())
}

// TestListPageInChromium opens the page in headless Chromium (when it is
// installed) and reads the DOM the browser built: the language, each logo
// as an embedded image inside the link to its site, and no script run.
func TestListPageInChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if testing.Short() {
		t.Skip("starts a browser")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("no " + chromium)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "difusores.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	err = Write(f, Page{Lang: i18n.ES, Generated: time.Now(), Entries: []Entry{
		{Name: "Diario Ejemplo", URL: "https://prep.diario.example/", Logo: logo(t)},
		{Name: `Radio <img src=x onerror="document.title='pwned'">`, URL: "https://radio.example/"},
	}})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--dump-dom", "file://"+page)
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	els := parse(t, dom)
	if els[0].name != "html" || els[0].attrs["lang"] != "es-MX" {
		t.Errorf("the browser sees <%s lang=%q>", els[0].name, els[0].attrs["lang"])
	}
	var imgs, links int
	for i, e := range els {
		switch e.name {
		case "img":
			imgs++
			if !strings.HasPrefix(e.attrs["src"], "data:image/png;base64,") || els[i-1].attrs["href"] != "https://prep.diario.example/" {
				t.Errorf("the browser sees an image %.40q outside its link", e.attrs["src"])
			}
		case "a":
			links++
		case "title":
			if strings.Contains(e.text, "pwned") {
				t.Error("a difusor's name ran script in the page")
			}
		}
	}
	if imgs != 1 || links != 2 {
		t.Errorf("the browser sees %d images and %d links, want 1 and 2:\n%s", imgs, links, dom)
	}
}
