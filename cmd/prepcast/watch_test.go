package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

// A difusor whose public site answers 403 on the pointer while its ack says
// it holds the cut: status --probe flags it and exits 1; the daemon's
// after-cycle check records it and writes the public page.
func TestPublicSiteWatched(t *testing.T) {
	c := newCLI(t, 1, false)
	var forbid atomic.Bool
	files := http.FileServer(http.Dir(c.srv[0].Root))
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/json/main.json" {
			if forbid.Load() {
				http.Error(w, "<h1>403 Forbidden</h1>", http.StatusForbidden)
				return
			}
			w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		}
		files.ServeHTTP(w, r)
	}))
	defer site.Close()
	cfg, _ := os.ReadFile(c.cfg)
	pageDir := filepath.Join(c.dir, "public")
	text := strings.Replace(string(cfg), "root: "+c.srv[0].Root+"}", "root: "+c.srv[0].Root+", url: "+site.URL+"/}", 1)
	text = strings.Replace(text, "targets:\n", "report: {out: "+pageDir+"}\ntargets:\n", 1)
	os.WriteFile(c.cfg, []byte(text), 0o644)

	if code, out := c.run("cycle", "--config", c.cfg); code != 0 {
		t.Fatalf("cycle: exit %d\n%s", code, out)
	}
	code, out := c.run("status", "--probe", "--config", c.cfg)
	if code != 0 || !strings.Contains(out, "SERVED") || strings.Contains(out, "not served") {
		t.Fatalf("status --probe of a site serving its cut: exit %d\n%s", code, out)
	}
	forbid.Store(true)
	code, out = c.run("status", "--probe", "--config", c.cfg)
	if code != 1 || !strings.Contains(out, "acked, not served: 403 on json/main.json") {
		t.Fatalf("status --probe of a 403 site: exit %d\n%s", code, out)
	}

	conf, err := config.Load(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	newPublicWatch(conf, zap.NewNop()).afterCycle(context.Background())
	db, err := state.OpenReadOnly(filepath.Join(c.dir, "state", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	latest, err := db.LatestServed(context.Background())
	if err != nil || latest["d1"].Problem != "403 on json/main.json" || latest["d1"].OK {
		t.Fatalf("recorded check: %v %+v", err, latest["d1"])
	}
	page, err := os.ReadFile(filepath.Join(pageDir, "index.html"))
	if err != nil || !strings.Contains(string(page), "Lo que sirve no coincide con el corte firmado") || !strings.Contains(string(page), site.URL+"/") {
		t.Fatalf("public page: %v\n%s", err, page)
	}
	// The status JSON carries the served cut.
	if code, out := c.run("status", "--json", "--config", c.cfg); code != 1 || !strings.Contains(out, `"acked_not_served": true`) {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}

	// prepcast key prints what the page shows.
	pub, _ := packager.LoadPublicKey(filepath.Join(c.dir, "keys", "manifest.pub"))
	if code, out := c.run("key", "--config", c.cfg); code != 0 || !strings.Contains(out, packager.Fingerprint(pub)) || !strings.Contains(out, "BEGIN PUBLIC KEY") {
		t.Errorf("key: exit %d\n%s", code, out)
	}
	if !strings.Contains(string(page), packager.Fingerprint(pub)) {
		t.Error("the public page lacks the key fingerprint")
	}
	other := filepath.Join(c.dir, "other")
	if code, out := c.run("report", "--config", c.cfg, "--out", other, "--lang", "en"); code != 0 {
		t.Fatalf("report: exit %d\n%s", code, out)
	}
	if en, _ := os.ReadFile(filepath.Join(other, "index.html")); !strings.Contains(string(en), `lang="en"`) {
		t.Error("report --lang en did not write an English page")
	}
}
