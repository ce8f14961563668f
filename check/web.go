package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prepcast/prepcast/internal/termsafe"
)

// Bounds of what the check reads from a difusor's web server: everything it
// returns is hostile.
const (
	maxBody      = 1 << 20 // a probe file or json/main.json
	maxHeader    = 64 << 10
	maxRedirects = 3
)

// webClient is a small HTTP client bounded in time, size and redirects.
// (The public verifier has one of its own; they could share one package.)
type webClient struct {
	c *http.Client
}

func newWebClient(timeout time.Duration, roots *x509.CertPool) *webClient {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: timeout}).DialContext,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: maxHeader,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DisableCompression:     true, // the bytes compared are the bytes served
		MaxIdleConnsPerHost:    2,
	}
	return &webClient{c: &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return nil
		},
	}}
}

// webResponse is what the check keeps of a response.
type webResponse struct {
	Status int
	Header http.Header
	Body   []byte
	TLS    *tls.ConnectionState
	URL    string // after redirects
}

// get fetches url with no cache in between and reads at most maxBody bytes.
func (w *webClient) get(ctx context.Context, url string) (*webResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "prepcast-check")
	req.Header.Set("Cache-Control", "no-cache") // ask any cache in between for the origin's answer
	resp, err := w.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%s: the body is larger than %d KiB", url, maxBody>>10)
	}
	return &webResponse{Status: resp.StatusCode, Header: resp.Header, Body: body, TLS: resp.TLS, URL: resp.Request.URL.String()}, nil
}

// RequiredCacheControl is the header the call requires on json/main.json.
const RequiredCacheControl = "no-cache, no-store, must-revalidate"

// evalCacheControl judges the caching headers of a response to
// json/main.json: the three directives of the call must be there, and
// nothing may let a cache keep the file (a positive max-age or s-maxage,
// public, immutable, stale-*, an Expires in the future).
func evalCacheControl(resp *webResponse) Row {
	row := Row{ID: RowCacheControl, Call: callSection[RowCacheControl], Threshold: "Cache-Control: " + RequiredCacheControl}
	cc := strings.Join(resp.Header.Values("Cache-Control"), ", ")
	row.Value = termsafe.Clip(cc, 200)
	if cc == "" {
		row.Value = "(none)"
	}
	have := map[string]bool{}
	var contra []string
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		name, val, _ := strings.Cut(d, "=")
		name = strings.TrimSpace(name)
		val = strings.Trim(strings.TrimSpace(val), `"`)
		have[name] = true
		switch name {
		case "max-age", "s-maxage":
			if n, err := strconv.ParseInt(val, 10, 64); err != nil || n > 0 {
				contra = append(contra, d)
			}
		case "public", "immutable", "stale-while-revalidate", "stale-if-error":
			contra = append(contra, d)
		}
	}
	if exp := resp.Header.Get("Expires"); exp != "" {
		et, err := http.ParseTime(exp)
		ref := time.Now()
		if dt, derr := http.ParseTime(resp.Header.Get("Date")); derr == nil {
			ref = dt
		}
		if err == nil && et.After(ref) {
			contra = append(contra, "Expires: "+termsafe.Clip(exp, 60)+" (in the future)")
		}
	}
	var missing []string
	for _, d := range []string{"no-cache", "no-store", "must-revalidate"} {
		if !have[d] {
			missing = append(missing, d)
		}
	}
	switch {
	case resp.Status == http.StatusNotFound && cc == "":
		row.Verdict = Warn
		row.Detail = "json/main.json is not published yet (404) and the 404 carries no Cache-Control, so the rule cannot be seen; check again after the first push (nginx's \"always\" sets it on a 404 too)"
		row.Fix = fixCacheControl
	case resp.Status != http.StatusOK && resp.Status != http.StatusNotFound:
		row.Verdict = Fail
		row.Detail = fmt.Sprintf("json/main.json answered HTTP %d", resp.Status)
		row.Fix = fixMainJSONPublic
	case len(missing) > 0:
		row.Verdict = Fail
		row.Detail = fmt.Sprintf("the Cache-Control rule on json/main.json is missing %s; the call requires exactly %q", strings.Join(missing, ", "), RequiredCacheControl)
		row.Fix = fixCacheControl
	case len(contra) > 0:
		row.Verdict = Fail
		row.Detail = "json/main.json carries caching headers that contradict the Cache-Control rule: " + strings.Join(contra, "; ")
		row.Fix = fixContradicting
	default:
		row.Verdict = Pass
	}
	return row
}

// evalCertificate judges the certificate an HTTPS response came with (or
// the error that stopped it): valid, and not expiring before end.
func evalCertificate(resp *webResponse, err error, end time.Time, now time.Time) Row {
	row := Row{ID: RowHTTPSCert, Threshold: "valid until " + end.Format("2006-01-02 15:04 MST")}
	var cve *tls.CertificateVerificationError
	var hne x509.HostnameError
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	switch {
	case err != nil && (errors.As(err, &cve) || errors.As(err, &hne) || errors.As(err, &uae) || errors.As(err, &cie)):
		row.Verdict, row.Value = Fail, "invalid"
		row.Detail = "the HTTPS certificate is not valid: " + termsafe.Clip(err.Error(), 300)
		row.Fix = fixCertInvalid
		return row
	case err != nil:
		row.Verdict, row.Value = Fail, "not measured"
		row.Detail = "HTTPS request failed: " + termsafe.Clip(err.Error(), 300)
		return row
	case resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0:
		row.Verdict, row.Value = Fail, "not measured"
		row.Detail = "the site answered without TLS (redirected to http?)"
		return row
	}
	leaf := resp.TLS.PeerCertificates[0]
	row.Value = "valid until " + leaf.NotAfter.UTC().Format("2006-01-02 15:04 UTC")
	row.Number, row.Unit = num(leaf.NotAfter.Sub(now).Seconds()), "seconds"
	if leaf.NotAfter.Before(end) {
		row.Verdict = Fail
		row.Detail = fmt.Sprintf("the certificate expires on %s, before the publication period ends (%s)", leaf.NotAfter.UTC().Format("2006-01-02"), end.Format("2006-01-02 15:04 MST"))
		row.Fix = fixCertRenew
		return row
	}
	row.Verdict = Pass
	return row
}
