package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/status"
	"github.com/prepcast/prepcast/targets"
)

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON (schema "+status.Schema+")")
	watch := fs.Bool("watch", false, "refresh every 2 s until interrupted")
	probe := fs.Bool("probe", false, "also read every target's own ack.json and flag disagreement with the local state")
	verbose := fs.Bool("verbose", false, "below the table, the whole text of every error (otherwise only of those the table shortens)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	for {
		v, err := statusView(ctx, c, time.Now(), *probe)
		if err != nil {
			return err
		}
		if *watch && tty {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear: refresh in place
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err != nil {
				return err
			}
		} else if *verbose {
			if err := v.WriteTableVerbose(stdout, c.Zone); err != nil {
				return err
			}
		} else if err := v.WriteTable(stdout, c.Zone); err != nil {
			return err
		}
		if !*watch {
			if !v.AllWithinMaxLag() || v.Disagreements() > 0 {
				return errFailed
			}
			return nil
		}
		if !tty {
			fmt.Fprintln(stdout)
		}
		select {
		case <-ctx.Done():
			return errInterrupted
		case <-time.After(2 * time.Second):
		}
	}
}

// statusView builds the status of c's publisher at now, probing the targets
// if asked.
func statusView(ctx context.Context, c *config.Config, now time.Time, probe bool) (*status.View, error) {
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return nil, err
	}
	db, err := status.OpenDB(statePath(c))
	if err != nil {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	var names []string
	for _, t := range c.EnabledTargets() {
		names = append(names, t.Name)
	}
	v, err := status.Build(ctx, status.Source{Store: store, DB: db, Targets: names, MaxLag: c.MaxLag}, now)
	if err != nil {
		return nil, err
	}
	if probe {
		pctx, cancel := context.WithTimeout(ctx, c.Timeouts.Dial+c.Timeouts.Operation)
		defer cancel()
		var mu sync.Mutex
		var opened []targets.Target
		v.ProbeTargets(pctx, func(name string) (targets.Target, error) {
			tc, _ := c.Target(name)
			t, err := newTarget(c, tc, zap.NewNop())
			if err == nil {
				mu.Lock()
				opened = append(opened, t)
				mu.Unlock()
			}
			return t, err
		})
		for _, t := range opened {
			t.Close()
		}
		// And what each public site serves (watch.go).
		if served, err := probePublic(ctx, c); err == nil && served != nil {
			v.ApplyServed(served)
		}
	}
	return v, nil
}
