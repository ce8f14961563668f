package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/report"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/status"
	"github.com/prepcast/prepcast/watch"
)

// publicSites lists the enabled targets that name their public url.
func publicSites(c *config.Config) []watch.Site {
	var out []watch.Site
	for _, t := range c.EnabledTargets() {
		if t.URL != "" {
			out = append(out, watch.Site{Name: t.Name, URL: t.URL})
		}
	}
	return out
}

// configPublicKey is the public half of the configured signing key.
func configPublicKey(c *config.Config) (ed25519.PublicKey, error) {
	priv, err := packager.LoadPrivateKey(c.SigningKey)
	if err != nil {
		return nil, err
	}
	return priv.Public().(ed25519.PublicKey), nil
}

// publicWatch is the daemon's check of the difusores' public sites after
// every cycle, and the public status page it rewrites.
type publicWatch struct {
	c   *config.Config
	log *zap.Logger
	w   *watch.Watcher
}

func newPublicWatch(c *config.Config, log *zap.Logger) *publicWatch {
	return &publicWatch{c: c, log: log, w: &watch.Watcher{Client: newWebClient(), Log: log, Cycle: c.Schedule.Every}}
}

// afterCycle checks every public site, records what each serves, and
// rewrites the public page when report.out is set. Failures are logged: the
// schedule goes on.
func (p *publicWatch) afterCycle(ctx context.Context) {
	sites := publicSites(p.c)
	if len(sites) == 0 && p.c.Report.Out == "" {
		return
	}
	pub, err := configPublicKey(p.c)
	if err != nil {
		p.log.Error("check public sites", zap.Error(err))
		return
	}
	db, err := state.Open(statePath(p.c))
	if err != nil {
		p.log.Error("check public sites", zap.Error(err))
		return
	}
	defer db.Close()
	p.w.PublicKey, p.w.DB = pub, db
	if len(sites) > 0 {
		// Bounded, so a slow site never holds up the next cycle for long.
		cctx, cancel := context.WithTimeout(ctx, min(max(p.c.Schedule.Every/2, time.Minute), 5*time.Minute))
		p.w.Check(cctx, sites)
		cancel()
	}
	if p.c.Report.Out != "" {
		if err := writeReport(ctx, p.c, db, pub, p.c.Report.Out, i18n.Default, time.Now()); err != nil {
			p.log.Error("write public status page", zap.Error(err))
		}
	}
}

// probePublic checks every public site once, without recording anything
// (status --probe).
func probePublic(ctx context.Context, c *config.Config) (map[string]state.Served, error) {
	sites := publicSites(c)
	if len(sites) == 0 {
		return nil, nil
	}
	pub, err := configPublicKey(c)
	if err != nil {
		return nil, err
	}
	w := &watch.Watcher{Client: newWebClient(), PublicKey: pub, Cycle: c.Schedule.Every}
	out := map[string]state.Served{}
	for _, r := range w.Check(ctx, sites) {
		out[r.Served.Target] = r.Served
	}
	return out, nil
}

// writeReport writes the public status page from the store and the
// recorded checks of the last 24 hours.
func writeReport(ctx context.Context, c *config.Config, db *state.DB, pub ed25519.PublicKey, dir string, lang i18n.Lang, now time.Time) error {
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return err
	}
	cuts, err := store.Cuts()
	if err != nil {
		return err
	}
	since := now.Add(-24 * time.Hour)
	var hist []state.Served
	if db != nil {
		if hist, err = db.ServedSince(ctx, since); err != nil {
			return err
		}
	}
	var sites []report.Site
	for _, t := range c.EnabledTargets() {
		sites = append(sites, report.Site{Name: t.Name, URL: t.URL})
	}
	return report.Write(dir, report.Build(now, since, packager.Fingerprint(pub), cuts, sites, hist), lang)
}

func init() {
	register(&command{name: "report", summary: "write the public status page (HTML and JSON): each difusor's served cut, lag and verification",
		examples: []string{
			"prepcast report --out /srv/instituto/prep-estado",
			"prepcast report --out ./estado --lang en",
		},
		run: func(ctx context.Context, a []string, out, _ io.Writer) error { return cmdReport(ctx, a, out) }})
}

// cmdReport writes the public status page once.
func cmdReport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("report")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	out := fs.String("out", "", "directory for index.html and status.json (default: report.out of the config)")
	langFlag := fs.String("lang", "es", "language of the page: es or en")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lang, err := i18n.Parse(*langFlag)
	if err != nil {
		return &usageError{"report: --lang: " + err.Error()}
	}
	c, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	dir := *out
	if dir == "" {
		dir = c.Report.Out
	}
	if dir == "" {
		return &usageError{"report: give --out DIR (or set report.out in the config)"}
	}
	pub, err := configPublicKey(c)
	if err != nil {
		return err
	}
	db, err := status.OpenDB(statePath(c)) // nil before the first push: every difusor unchecked
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	if err := writeReport(ctx, c, db, pub, dir, lang, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s/index.html and %s/status.json\n", dir, dir)
	return nil
}
