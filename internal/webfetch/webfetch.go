// Package webfetch fetches files from web sites that may be hostile or
// broken (a difusor's public site, as anyone reads it): every request is
// bounded in time (connect, TLS, response header, idle between bytes, whole
// request) and in size (a cap per call), redirects are limited and kept on
// the same host, gzip is accepted (and the cap applies to the decompressed
// bytes), and bodies are hashed as they stream, never held unless asked for
// and small.
//
// Nothing a site returns is trusted or printed by this package: callers
// compare hashes with signed data and escape any text (internal/termsafe)
// before showing it.
package webfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Options configures a [Client]; zero fields take the defaults below.
type Options struct {
	UserAgent      string        // e.g. "prepcast/1.2 (+https://…)"; required
	ConnectTimeout time.Duration // TCP connect and TLS handshake, each (default 10 s)
	HeaderTimeout  time.Duration // from request sent to response header (default 15 s)
	IdleTimeout    time.Duration // longest wait for the next body bytes (default 15 s)
	RequestTimeout time.Duration // whole request, body included (default 2 min)
	MaxRedirects   int           // default 5; negative means none followed
	Transport      http.RoundTripper
}

// Defaults.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultHeaderTimeout  = 15 * time.Second
	DefaultIdleTimeout    = 15 * time.Second
	DefaultRequestTimeout = 2 * time.Minute
	DefaultMaxRedirects   = 5
)

// Errors a fetch can end with, for errors.Is. Every error is a *[Error].
var (
	// ErrUnreachable: no HTTP answer at all (DNS, connection refused,
	// TLS failure, timeout before the response header).
	ErrUnreachable = errors.New("site unreachable")
	// ErrTooLarge: the body is longer than the cap of the call.
	ErrTooLarge = errors.New("response larger than allowed")
	// ErrTooManyRedirects: more redirects than Options.MaxRedirects.
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrOtherHost: a redirect to another host, which is not followed.
	ErrOtherHost = errors.New("redirect to another host")
	// ErrStalled: the body stopped arriving for IdleTimeout, or the whole
	// request took longer than RequestTimeout.
	ErrStalled = errors.New("response stalled or too slow")
)

// Error describes a failed fetch. Its text holds the URL (as the caller gave
// it or as redirected) and never anything from the response body.
type Error struct {
	URL  string
	Kind error // one of the Err… values, or nil for another read error
	Err  error
}

func (e *Error) Error() string {
	if e.Kind != nil && e.Err != nil && e.Kind != e.Err {
		return fmt.Sprintf("%s: %v: %v", e.URL, e.Kind, e.Err)
	}
	if e.Kind != nil {
		return fmt.Sprintf("%s: %v", e.URL, e.Kind)
	}
	return fmt.Sprintf("%s: %v", e.URL, e.Err)
}

// Unwrap lets errors.Is find the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Response is what a fetch found. Status is the HTTP status of the final
// response; the body is summarised by its decoded size and SHA-256 (Body is
// set only by [Client.Get]).
type Response struct {
	URL       string // final URL
	Status    int
	Header    http.Header
	Size      int64  // bytes of the decoded body
	SHA256    string // lower-case hex of the decoded body
	Body      []byte // Get only
	Redirects int
}

// Client fetches with the bounds of its Options. It is safe for concurrent use.
type Client struct {
	o  Options
	hc *http.Client
}

// New returns a Client.
func New(o Options) *Client {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	}
	if o.MaxRedirects < 0 {
		o.MaxRedirects = 0
	}
	tr := o.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            (&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:    o.ConnectTimeout,
			ResponseHeaderTimeout:  o.HeaderTimeout,
			MaxResponseHeaderBytes: 64 << 10,
			MaxIdleConnsPerHost:    16,
			IdleConnTimeout:        60 * time.Second,
			ForceAttemptHTTP2:      true,
		}
	}
	c := &Client{o: o}
	c.hc = &http.Client{Transport: tr, CheckRedirect: c.checkRedirect}
	return c
}

// CloseIdle closes kept-alive connections.
func (c *Client) CloseIdle() { c.hc.CloseIdleConnections() }

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > c.o.MaxRedirects {
		return fmt.Errorf("%w (more than %d)", ErrTooManyRedirects, c.o.MaxRedirects)
	}
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return fmt.Errorf("%w: %s to %s", ErrOtherHost, via[0].URL.Hostname(), req.URL.Hostname())
	}
	return nil
}

// Get fetches rawURL and returns its body if it answers 200 and the body is
// at most max bytes. Other statuses are returned as a Response without
// Body and without an error; a larger body is an error wrapping ErrTooLarge.
func (c *Client) Get(ctx context.Context, rawURL string, max int64) (*Response, error) {
	var buf strings.Builder
	r, err := c.fetch(ctx, rawURL, max, &buf)
	if err != nil || r.Status != http.StatusOK {
		return r, err
	}
	r.Body = []byte(buf.String())
	return r, nil
}

// Hash fetches rawURL and hashes its body as it streams, holding none of
// it. A body longer than max is an error wrapping ErrTooLarge (the read
// stops at max+1 bytes). Statuses other than 200 are returned without an
// error and without reading the body.
func (c *Client) Hash(ctx context.Context, rawURL string, max int64) (*Response, error) {
	return c.fetch(ctx, rawURL, max, io.Discard)
}

func (c *Client) fetch(ctx context.Context, rawURL string, max int64, sink io.Writer) (*Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &Error{URL: rawURL, Err: errors.New("not an http:// or https:// URL")}
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
	defer cancel()
	// The idle timer cancels the request when no bytes arrive for
	// IdleTimeout; every read that brings bytes resets it.
	var stalled sync.Once
	stalledFlag := make(chan struct{})
	idle := time.AfterFunc(c.o.IdleTimeout+c.o.HeaderTimeout+c.o.ConnectTimeout, func() {
		stalled.Do(func() { close(stalledFlag) })
		cancel()
	})
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &Error{URL: rawURL, Err: err}
	}
	req.Header.Set("User-Agent", c.o.UserAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.classify(rawURL, ctx, stalledFlag, err, false)
	}
	defer resp.Body.Close()
	redirects := 0
	for q := resp.Request; q != nil && q.Response != nil; q = q.Response.Request {
		redirects++
	}
	r := &Response{URL: resp.Request.URL.String(), Status: resp.StatusCode, Header: resp.Header, Redirects: redirects}
	if resp.StatusCode != http.StatusOK {
		return r, nil
	}
	if resp.ContentLength > max && !resp.Uncompressed {
		return r, &Error{URL: rawURL, Kind: ErrTooLarge, Err: fmt.Errorf("Content-Length %d, at most %d expected", resp.ContentLength, max)}
	}
	h := sha256.New()
	w := io.MultiWriter(h, sink)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		idle.Reset(c.o.IdleTimeout)
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > max {
				return r, &Error{URL: rawURL, Kind: ErrTooLarge, Err: fmt.Errorf("more than %d bytes", max)}
			}
			_, _ = w.Write(buf[:k])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return r, c.classify(rawURL, ctx, stalledFlag, rerr, true)
		}
	}
	r.Size, r.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return r, nil
}

// bufPool holds the read buffers of fetches in progress.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// classify turns a transport error into an *Error with a kind.
func (c *Client) classify(rawURL string, ctx context.Context, stalledFlag chan struct{}, err error, inBody bool) error {
	select {
	case <-stalledFlag:
		return &Error{URL: rawURL, Kind: ErrStalled, Err: fmt.Errorf("no data for %v", c.o.IdleTimeout)}
	default:
	}
	if errors.Is(err, ErrTooManyRedirects) {
		return &Error{URL: rawURL, Kind: ErrTooManyRedirects, Err: unwrapURL(err)}
	}
	if errors.Is(err, ErrOtherHost) {
		return &Error{URL: rawURL, Kind: ErrOtherHost, Err: unwrapURL(err)}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if inBody {
			return &Error{URL: rawURL, Kind: ErrStalled, Err: fmt.Errorf("not complete within %v", c.o.RequestTimeout)}
		}
		return &Error{URL: rawURL, Kind: ErrUnreachable, Err: fmt.Errorf("no answer within %v", c.o.RequestTimeout)}
	}
	if inBody {
		return &Error{URL: rawURL, Err: unwrapURL(err)}
	}
	return &Error{URL: rawURL, Kind: ErrUnreachable, Err: unwrapURL(err)}
}

// unwrapURL drops net/http's *url.Error wrapper, whose text repeats the URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
