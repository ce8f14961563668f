package check

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/termsafe"
)

// webRows checks the web server: what it is, the Cache-Control rule on
// json/main.json and, for https, the certificate.
func (r *runner) webRows(ctx context.Context, tc *config.Target, add func(Row)) {
	if tc.URL == "" {
		for _, id := range []string{RowWebServer, RowCacheControl} {
			add(Row{ID: id, Verdict: Fail, Value: "not measured", Detail: "url is not set",
				Fix: fixSetURL})
		}
		return
	}
	u := tc.URL + "json/main.json"
	resp, err := r.web.get(ctx, u)
	ws := Row{ID: RowWebServer, Threshold: "Apache, nginx, IIS…"}
	if err != nil {
		ws.Verdict, ws.Value, ws.Detail = Fail, "unreachable", "fetch "+u+": "+termsafe.String(err.Error())
		ws.Fix = fixWebServer
		add(ws)
		add(Row{ID: RowCacheControl, Verdict: Fail, Value: "not measured", Detail: ws.Detail})
	} else {
		ws.Verdict = Pass
		ws.Value = termsafe.Clip(resp.Header.Get("Server"), 100)
		if ws.Value == "" {
			ws.Value = "(no Server header)"
		}
		ws.Value = fmt.Sprintf("%s, HTTP %d", ws.Value, resp.Status)
		add(ws)
		add(evalCacheControl(resp))
	}
	if p, perr := url.Parse(tc.URL); perr == nil && strings.EqualFold(p.Scheme, "https") {
		add(evalCertificate(resp, err, r.th.PublicationEnd, r.o.Now()))
	}
}
