package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/dashboard"
	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/schedule"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/status"
)

// cmdRun is the daemon: the configured schedule, /metrics and /status.
// SIGUSR1 (or "prepcast cycle" from another shell) asks for a cycle now;
// SIGINT/SIGTERM stop it, leaving every target on a whole cut.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	langFlag := fs.String("lang", string(i18n.Default), "language of the dashboard at /: es (español) or en (English); a page may ask for the other with ?lang=")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lang, err := i18n.Parse(*langFlag)
	if err != nil {
		return &usageError{"--lang: " + err.Error()}
	}
	c, err := loadTargetsConfig(*cfgPath)
	if err != nil {
		return err
	}
	log, closeLog, err := newLogger(c, stderr, true)
	if err != nil {
		return err
	}
	defer closeLog()

	trigger := make(chan struct{}, 1)
	usr1 := make(chan os.Signal, 1)
	if len(cycleSignals) > 0 { // Notify with no signal would take every signal
		signal.Notify(usr1, cycleSignals...)
	}
	defer close(usr1) // after Stop (defers run last first)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			select {
			case trigger <- struct{}{}:
			default:
			}
		}
	}()

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("%w: listen: %w (change listen in the config)", errConfig, err)
	}
	plan := schedule.Plan{Every: c.Schedule.Every, Start: c.Schedule.Start, End: c.Schedule.End, HoldUntil: c.Schedule.HoldUntil, Zone: c.Zone}
	srv := &http.Server{Handler: statusHandler(c, plan, lang), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", zap.Error(err))
		}
	}()
	defer srv.Close()
	log.Info("serving the dashboard at /, /metrics and /status", zap.String("listen", ln.Addr().String()))

	targets := c.EnabledTargets()
	// One connection per difusor for the whole night, not one per cut.
	pool := newTargetPool(c, log)
	defer pool.Close()
	public := newPublicWatch(c, log) // watch.go
	r := &schedule.Runner{
		Plan:    plan,
		Trigger: trigger,
		Log:     log,
		OnWait: func(p schedule.Phase, next time.Time) {
			log.Info("waiting", zap.Stringer("phase", p), zap.Time("next", next))
		},
		// The cycle runs on the command's context, not the schedule's: on a
		// graceful stop the push in flight drains instead of aborting.
		Cycle: func(_ context.Context, cut bool) error {
			var cutErr error
			if cut {
				res, err := makeCut(ctx, c, cutFlags{}, log)
				if err != nil {
					// Still push: the targets may lack the latest good cut.
					cutErr = err
					log.Error("cut failed; pushing the latest good cut", zap.Error(err))
				} else {
					printCut(stdout, res)
				}
			}
			// Every cycle, and every check while holding the final cut,
			// reads back its slice of the rotating verification (verify:
			// in the config) and repairs what differs.
			err := pushLoop(ctx, c, targets, pool, false, stdout, log)
			if errors.Is(err, errFailed) {
				err = nil // reported per target; the schedule goes on
			}
			public.afterCycle(ctx) // what the public sees, and the public page
			return errors.Join(cutErr, err)
		},
	}
	// A difusor that lags (the daemon was down, or restarted after a
	// failure) is caught up now, not at the next tick.
	if lagging, err := laggingTargets(ctx, c); err != nil {
		log.Warn("read status at start", zap.Error(err))
	} else if len(lagging) > 0 {
		log.Info("catching up lagging difusores at start", zap.Strings("targets", lagging))
		fmt.Fprintf(stdout, "catching up %d lagging difusores: %s\n", len(lagging), strings.Join(lagging, ", "))
		if err := pushLoop(ctx, c, targets, pool, false, stdout, log); err != nil && !errors.Is(err, errFailed) {
			if ctx.Err() != nil || draining() {
				return errInterrupted
			}
			log.Error("catch-up at start", zap.Error(err))
		}
	}
	// A graceful stop ends the schedule once the cycle in flight has
	// stopped.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go func() {
		select {
		case <-drain:
			stopRun()
		case <-runCtx.Done():
		}
	}()
	err = r.Run(runCtx)
	if runCtx.Err() != nil {
		return errInterrupted
	}
	return err
}

// statusHandler serves the dashboard at / (see package dashboard), /status
// (the JSON of status --json), /metrics (Prometheus) and /healthz; all
// read-only.
func statusHandler(c *config.Config, plan schedule.Plan, lang i18n.Lang) http.Handler {
	view := func(ctx context.Context) (*status.View, error) { return statusView(ctx, c, time.Now(), false) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&status.Collector{View: view, Totals: func(ctx context.Context) (map[string]state.Totals, error) {
		db, err := status.OpenDB(statePath(c))
		if err != nil || db == nil {
			return nil, err
		}
		defer db.Close()
		return db.TotalsByTarget(ctx)
	}})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		v, err := view(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", dashboard.New(dashboard.Options{
		View:    view,
		History: func(ctx context.Context) (dashboard.History, error) { return nightHistory(ctx, c) },
		Next: func(now time.Time) time.Time {
			switch plan.PhaseAt(now) {
			case schedule.Over:
				return time.Time{}
			case schedule.Before:
				return plan.Start
			}
			return plan.Next(now)
		},
		Lang: lang,
	}))
	return mux
}

// historyLimit bounds the attempts the dashboard's lag charts read: a
// night of 30 difusores and 150 cuts with retries fits.
const historyLimit = 20000

// nightHistory returns the cuts in the store and every acknowledgement the
// state database recorded, for the dashboard's lag charts.
func nightHistory(ctx context.Context, c *config.Config) (dashboard.History, error) {
	var h dashboard.History
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return h, err
	}
	cuts, err := store.Cuts()
	if err != nil {
		return h, err
	}
	for _, ci := range cuts {
		h.Cuts = append(h.Cuts, dashboard.CutPoint{Seq: ci.Seq, Created: ci.Created})
	}
	db, err := status.OpenDB(statePath(c))
	if err != nil || db == nil {
		return h, err
	}
	defer db.Close()
	hist, err := db.History(ctx, "", historyLimit)
	if err != nil {
		return h, err
	}
	for _, a := range hist {
		if a.Result == state.ResultOK && !a.End.IsZero() {
			h.Acks = append(h.Acks, dashboard.AckPoint{Target: a.Target, Seq: a.Seq, At: a.End})
		}
	}
	return h, nil
}

// laggingTargets names the enabled targets that lack the latest cut.
func laggingTargets(ctx context.Context, c *config.Config) ([]string, error) {
	v, err := statusView(ctx, c, time.Now(), false)
	if err != nil || v.Latest == nil {
		return nil, err
	}
	var out []string
	for _, t := range v.Targets {
		if t.LagCuts > 0 {
			out = append(out, t.Name)
		}
	}
	return out, nil
}
