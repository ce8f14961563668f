package dashboard

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/prepcast/prepcast/dashboard/browsertest"
)

// layout is what the browser measured of the page.
type layout struct {
	Rows        int     `json:"rows"`
	TableBottom float64 `json:"tableBottom"`
	ScrollWidth float64 `json:"scrollWidth"`
	ClientWidth float64 `json:"clientWidth"`
	Live        string  `json:"live"`
	Charts      int     `json:"charts"`
}

const measure = `(() => {
  const t = document.querySelector('#difusores');
  return {
    rows: document.querySelectorAll('#difusores tbody tr').length,
    tableBottom: t.getBoundingClientRect().bottom + window.scrollY,
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    live: document.querySelector('#conn').textContent,
    charts: document.querySelectorAll('svg.chart path.line').length,
  };
})()`

// 30 difusores fit a 1920×1080 screen without scrolling, and on a phone
// the page needs no sideways scrolling; the script connects to the event
// stream (the page says "en vivo").
func TestDashboardFitsScreenAndPhone(t *testing.T) {
	srv := newTestServer(t)
	for _, tt := range []struct {
		name          string
		width, height int
	}{{"screen-1920x1080", 1920, 1080}, {"phone-390x844", 390, 844}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := browsertest.Start(t, tt.width, tt.height)
			if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible("#difusores")); err != nil {
				t.Fatal(err)
			}
			if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#conn').className === 'on'`)); err != nil {
				t.Fatalf("the page did not connect to its event stream: %v", err)
			}
			l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](measure))
			if err != nil {
				t.Fatal(err)
			}
			browsertest.Screenshot(t, ctx, tt.name+".png")
			if l.Rows != 30 || l.Charts != 30 || l.Live != "en vivo" {
				t.Fatalf("layout %+v", l)
			}
			if tt.width == 1920 && l.TableBottom > 1080 {
				t.Errorf("30 difusores end at %.0f px, below a 1080 px screen", l.TableBottom)
			}
			if l.ScrollWidth > l.ClientWidth {
				t.Errorf("the page is %.0f px wide in a %.0f px window", l.ScrollWidth, l.ClientWidth)
			}
			text, err := chromedp.Run(ctx, chromedp.Text("tr[data-difusor='difusor-01']"))
			if err != nil || !strings.Contains(text, "con falla") || !strings.Contains(text, "HOST KEY CHANGED") {
				t.Errorf("failing row reads %q (%v)", text, err)
			}
		})
	}
}
