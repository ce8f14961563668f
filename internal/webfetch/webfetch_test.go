package webfetch

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func testClient() *Client {
	return New(Options{UserAgent: "prepcast/test", ConnectTimeout: time.Second, HeaderTimeout: time.Second,
		IdleTimeout: 300 * time.Millisecond, RequestTimeout: 2 * time.Second})
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestHashStreamsAndSendsUserAgent(t *testing.T) {
	body := bytes.Repeat([]byte("acta "), 100000)
	var ua string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua = r.UserAgent()
		w.Write(body)
	}))
	defer srv.Close()
	r, err := testClient().Hash(context.Background(), srv.URL+"/a.jpg", int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if r.SHA256 != sum(body) || r.Size != int64(len(body)) || r.Body != nil {
		t.Errorf("got size %d sha %s body %d bytes", r.Size, r.SHA256, len(r.Body))
	}
	if ua != "prepcast/test" {
		t.Errorf("User-Agent %q", ua)
	}
}

// A gzip-encoded answer is decoded: the hash is the file's, and the cap
// applies to the decoded bytes (a small bomb is stopped).
func TestGzipDecodedAndCapped(t *testing.T) {
	plain := bytes.Repeat([]byte{0}, 3<<20)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Error("gzip not accepted")
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz.Bytes())
	}))
	defer srv.Close()
	c := testClient()
	r, err := c.Hash(context.Background(), srv.URL, int64(len(plain)))
	if err != nil || r.SHA256 != sum(plain) {
		t.Fatalf("decoded hash: %v", err)
	}
	if _, err := c.Hash(context.Background(), srv.URL, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("3 MiB decoded under a 1 MiB cap: %v, want ErrTooLarge", err)
	}
}

// An endless answer is cut at the cap, with or without a Content-Length.
func TestHugeResponseStopsAtCap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Content-Length", "100000000000")
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	for _, p := range []string{"/endless", "/declared"} {
		start := time.Now()
		_, err := testClient().Get(context.Background(), srv.URL+p, 1<<20)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", p, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", p, d)
		}
	}
}

func TestEndlessRedirectsAndOtherHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, "http://localhost.invalid/x", http.StatusFound)
		case "/twice":
			http.Redirect(w, r, "/once", http.StatusFound)
		case "/once":
			w.Write([]byte("ok"))
		default:
			http.Redirect(w, r, r.URL.Path+"x", http.StatusFound)
		}
	}))
	defer srv.Close()
	c := testClient()
	if _, err := c.Get(context.Background(), srv.URL+"/loop", 100); !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("endless redirects: %v", err)
	}
	if _, err := c.Get(context.Background(), srv.URL+"/away", 100); !errors.Is(err, ErrOtherHost) {
		t.Errorf("redirect to another host: %v", err)
	}
	r, err := c.Get(context.Background(), srv.URL+"/twice", 100)
	if err != nil || string(r.Body) != "ok" || r.Redirects != 1 {
		t.Errorf("one same-host redirect: %v %+v", err, r)
	}
}

// A slow drip (a byte now and then, forever) ends within the request
// timeout; a silent body within the idle timeout.
func TestSlowDripIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for {
			if r.URL.Path == "/silent" {
				<-r.Context().Done()
				return
			}
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	for _, p := range []string{"/drip", "/silent"} {
		start := time.Now()
		_, err := testClient().Hash(context.Background(), srv.URL+p, 1000000)
		if !errors.Is(err, ErrStalled) {
			t.Errorf("%s: %v, want ErrStalled", p, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %v, more than the 2 s request timeout", p, d)
		}
	}
}

func TestUnreachableAndStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	r, err := testClient().Get(context.Background(), url+"/x", 100)
	if err != nil || r.Status != 404 || r.Body != nil {
		t.Errorf("404: %v %+v", err, r)
	}
	srv.Close()
	if _, err := testClient().Get(context.Background(), url+"/x", 100); !errors.Is(err, ErrUnreachable) {
		t.Errorf("closed server: %v", err)
	}
	if _, err := testClient().Get(context.Background(), "ftp://example/", 100); err == nil {
		t.Error("ftp URL accepted")
	}
}
