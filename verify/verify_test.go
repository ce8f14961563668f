package verify

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/internal/webfetch"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets/localfs"
)

// site is a results tree cut, signed and pushed by the publisher into a
// web root, served by an httptest server with the difusor rules.
type site struct {
	t        *testing.T
	src, web string
	store    *packager.Store
	priv     ed25519.PrivateKey
	pub      ed25519.PublicKey
	n        int
	srv      *httptest.Server
	// override answers some paths itself (a hostile or broken site).
	override func(w http.ResponseWriter, r *http.Request) bool
	noCache  bool
}

func newSite(t *testing.T, images int) *site {
	pub, priv, _ := ed25519.GenerateKey(crand.Reader)
	st, err := packager.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, src: t.TempDir(), web: t.TempDir(), store: st, priv: priv, pub: pub}
	for i := range images {
		s.write(fmt.Sprintf("actas/%04d.jpg", i), strings.Repeat(fmt.Sprint(i), 500))
	}
	files := http.FileServer(http.Dir(s.web))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.override != nil && s.override(w, r) {
			return
		}
		if r.URL.Path == "/json/main.json" && !s.noCache {
			w.Header().Set("Cache-Control", WantCacheControl)
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.push()
	return s
}

func (s *site) write(rel, data string) {
	p := filepath.Join(s.src, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// push makes the next cut (a CSV and the pointer change) and pushes it.
func (s *site) push() *packager.CutInfo {
	s.t.Helper()
	s.n++
	s.write("datos/PUE_GUB_2024.csv", fmt.Sprintf("GUBERNATURA\ncorte %d\n", s.n))
	s.write("json/main.json", fmt.Sprintf(`{"corte":%d}`, s.n))
	res, err := s.store.Cut(context.Background(), packager.CutOptions{Source: s.src, Key: s.priv, Pointers: []string{"json/main.json"}})
	if err != nil {
		s.t.Fatal(err)
	}
	tg, err := localfs.New("web", s.web)
	if err != nil {
		s.t.Fatal(err)
	}
	defer tg.Close()
	eng := &publisher.Engine{Store: s.store, PublicKey: s.pub, Log: zaptest.NewLogger(s.t), RetentionWindow: time.Hour}
	if r := eng.Push(context.Background(), []publisher.TargetSpec{{Target: tg}})[0]; r.Err != nil {
		s.t.Fatal(r.Err)
	}
	return res.Info
}

func (s *site) verify(o Options) *Report {
	s.t.Helper()
	rep, err := s.run(o)
	if err != nil {
		s.t.Fatal(err)
	}
	return rep
}

func (s *site) run(o Options) (*Report, error) {
	if o.URL == "" {
		o.URL = s.srv.URL + "/"
	}
	if o.PublicKey == nil {
		o.PublicKey = s.pub
	}
	o.Client = webfetch.New(webfetch.Options{UserAgent: "prepcast/test", IdleTimeout: 500 * time.Millisecond, RequestTimeout: 3 * time.Second})
	o.Settle = 10 * time.Millisecond
	o.Rand = rand.New(rand.NewPCG(1, 2))
	return Run(context.Background(), o)
}

func TestExactSiteVerifies(t *testing.T) {
	s := newSite(t, 120)
	ci := s.push()
	rep := s.verify(Options{})
	if !rep.OK() || rep.Seq != ci.Seq {
		t.Fatalf("exact site: ok=%v seq %d (want %d) problem %q mismatches %v", rep.OK(), rep.Seq, ci.Seq, rep.Problem, rep.Mismatches)
	}
	// Pointer, CSV and 50 of the 120 images (2 % is less than 50).
	if rep.Checked != 52 || rep.FilesInCut != 122 {
		t.Errorf("checked %d of %d files, want 52 of 122", rep.Checked, rep.FilesInCut)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings %v", rep.Warnings)
	}
	if full := s.verify(Options{Full: true}); !full.OK() || full.Checked != 122 {
		t.Errorf("--full: ok=%v checked %d", full.OK(), full.Checked)
	}
}

// One flipped byte in an image, same size: found by --full, named.
func TestFlippedByteIsChanged(t *testing.T) {
	s := newSite(t, 60)
	p := filepath.Join(s.web, "actas", "0007.jpg")
	b, _ := os.ReadFile(p)
	b[10] ^= 1
	os.WriteFile(p, b, 0o644)
	rep := s.verify(Options{Full: true})
	if rep.OK() || len(rep.Mismatches) != 1 || rep.Mismatches[0].Path != "actas/0007.jpg" || rep.Mismatches[0].Kind != Changed {
		t.Fatalf("mismatches %+v", rep.Mismatches)
	}
}

// An HTML error page answered with status 200, and a missing file.
func TestHTMLErrorPageAndMissingFile(t *testing.T) {
	s := newSite(t, 60)
	os.Remove(filepath.Join(s.web, "actas", "0003.jpg"))
	s.override = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/datos/PUE_GUB_2024.csv" {
			w.Write([]byte("<html><body>\x1b[31mMantenimiento</body></html>"))
			return true
		}
		if r.URL.Path == "/actas/0004.jpg" {
			w.WriteHeader(http.StatusForbidden)
			return true
		}
		return false
	}
	rep := s.verify(Options{Full: true})
	want := map[string]Kind{"actas/0003.jpg": Missing, "actas/0004.jpg": Unreadable, "datos/PUE_GUB_2024.csv": Changed}
	if len(rep.Mismatches) != len(want) {
		t.Fatalf("mismatches %+v", rep.Mismatches)
	}
	for _, m := range rep.Mismatches {
		if want[m.Path] != m.Kind {
			t.Errorf("%s: %s, want %s", m.Path, m.Kind, want[m.Path])
		}
		if m.Path == "actas/0004.jpg" && m.Status != 403 {
			t.Errorf("403 recorded as %d", m.Status)
		}
	}
}

func TestOtherKeyIsBadSignature(t *testing.T) {
	s := newSite(t, 10)
	other, _, _ := ed25519.GenerateKey(crand.Reader)
	rep := s.verify(Options{PublicKey: other})
	if rep.OK() || rep.Problem != ProblemBadSignature {
		t.Fatalf("other key: problem %q", rep.Problem)
	}
	// A site that serves a manifest signed by another key (its own).
	s2 := newSite(t, 10)
	rep = s2.verify(Options{PublicKey: s.pub})
	if rep.OK() || rep.Problem != ProblemBadSignature {
		t.Fatalf("manifest for another key: problem %q", rep.Problem)
	}
}

func TestCacheControlWarnings(t *testing.T) {
	s := newSite(t, 10)
	s.noCache = true
	rep := s.verify(Options{})
	if !rep.OK() || len(rep.Warnings) != 1 || rep.Warnings[0].Code != WarnCacheControlMissing {
		t.Errorf("no Cache-Control: ok=%v warnings %v", rep.OK(), rep.Warnings)
	}
	s.override = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/json/main.json" {
			w.Header().Set("Cache-Control", "max-age=60")
		}
		return false
	}
	rep = s.verify(Options{})
	if len(rep.Warnings) != 1 || rep.Warnings[0].Code != WarnCacheControlWeak || rep.Warnings[0].Value != "max-age=60" {
		t.Errorf("max-age: warnings %v", rep.Warnings)
	}
}

func TestNoProofAndUnreachable(t *testing.T) {
	s := newSite(t, 10)
	os.RemoveAll(filepath.Join(s.web, ".well-known"))
	if rep := s.verify(Options{}); rep.OK() || rep.Problem != ProblemNoProof || rep.ProblemStatus != 404 {
		t.Errorf("no proof: %q %d", rep.Problem, rep.ProblemStatus)
	}
	url := s.srv.URL + "/"
	s.srv.Close()
	if _, err := s.run(Options{URL: url}); !errors.Is(err, webfetch.ErrUnreachable) {
		t.Errorf("closed site: %v", err)
	}
	if _, err := s.run(Options{URL: "ftp://x/"}); !errors.Is(err, ErrUsage) {
		t.Errorf("ftp: %v", err)
	}
}

// A pointer served while its cut's files are being replaced by the next
// cut's: the verifier waits for the switch instead of reporting.
func TestSwitchDuringVerifyIsNotAMismatch(t *testing.T) {
	s := newSite(t, 10)
	switched := false
	s.override = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/datos/PUE_GUB_2024.csv" && !switched {
			switched = true
			s.push() // the CSV changes under the verifier, then the pointer
		}
		return false
	}
	rep := s.verify(Options{Concurrency: 1})
	if !rep.OK() || rep.Seq != 2 || rep.Attempts != 2 {
		t.Fatalf("ok=%v seq %d attempts %d mismatches %v", rep.OK(), rep.Seq, rep.Attempts, rep.Mismatches)
	}
}
