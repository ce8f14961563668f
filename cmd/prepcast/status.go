package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

// statusRow is one target in the status view.
type statusRow struct {
	Target     string    `json:"target"`
	AckedSeq   int64     `json:"acked_seq"`
	AckedID    string    `json:"acked_id"`
	AckedAt    time.Time `json:"acked_at,omitzero"`
	LagCuts    int64     `json:"lag_cuts"`
	LagSeconds float64   `json:"lag_seconds"`
	State      string    `json:"state"`
	LastError  string    `json:"last_error,omitempty"`
	Behind     bool      `json:"behind"` // lag over max_lag
}

type statusView struct {
	LatestSeq int64       `json:"latest_seq"`
	LatestID  string      `json:"latest_id"`
	LatestAt  time.Time   `json:"latest_created,omitzero"`
	Targets   []statusRow `json:"targets"`
}

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	now := time.Now()
	v, err := buildStatus(ctx, c, now)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		printStatus(stdout, c, v, now)
	}
	for _, r := range v.Targets {
		if r.Behind {
			return errFailed
		}
	}
	return nil
}

// buildStatus reads the store and the state database without blocking a
// push that runs at the same time.
func buildStatus(ctx context.Context, c *config.Config, now time.Time) (*statusView, error) {
	store, err := packager.OpenStore(c.StateDir)
	if err != nil {
		return nil, err
	}
	cuts, err := store.Cuts()
	if err != nil {
		return nil, err
	}
	v := &statusView{}
	created := map[int64]time.Time{}
	for _, ci := range cuts {
		created[ci.Seq] = ci.Created
	}
	if len(cuts) > 0 {
		l := cuts[len(cuts)-1]
		v.LatestSeq, v.LatestID, v.LatestAt = l.Seq, l.ID, l.Created
	}
	acks := map[string]state.Ack{}
	progress := map[string]state.Progress{}
	db, err := state.OpenReadOnly(statePath(c))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		defer db.Close()
		if acks, err = db.Acks(ctx); err != nil {
			return nil, err
		}
		ps, err := db.Progress(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			progress[p.Target] = p
		}
	}
	for _, t := range c.EnabledTargets() {
		r := statusRow{Target: t.Name, State: "never pushed"}
		a, ok := acks[t.Name]
		if ok {
			r.AckedSeq, r.AckedID, r.AckedAt = a.Seq, a.CutID, a.AckedAt
		}
		if v.LatestSeq > 0 {
			r.LagCuts = v.LatestSeq - r.AckedSeq
			if r.LagCuts > 0 {
				// Lag in time: how long the target has missed the oldest cut it lacks.
				since := v.LatestAt
				if t0, ok := created[r.AckedSeq+1]; ok {
					since = t0
				}
				r.LagSeconds = max(0, now.Sub(since).Seconds())
			}
		}
		if p, ok := progress[t.Name]; ok {
			r.State = p.State
			if p.State != "ok" && p.State != "failing" && !state.PIDAlive(p.PID) {
				r.State = "interrupted"
			}
			r.LastError = p.LastError
		}
		if r.LagCuts == 0 && ok {
			r.State = "ok"
		}
		r.Behind = r.LagCuts > 0 && time.Duration(r.LagSeconds*float64(time.Second)) > c.MaxLag
		v.Targets = append(v.Targets, r)
	}
	sort.SliceStable(v.Targets, func(i, j int) bool {
		a, b := v.Targets[i], v.Targets[j]
		if a.LagCuts != b.LagCuts {
			return a.LagCuts > b.LagCuts
		}
		return a.Target < b.Target
	})
	return v, nil
}

func printStatus(w io.Writer, c *config.Config, v *statusView, now time.Time) {
	if v.LatestSeq == 0 {
		fmt.Fprintln(w, "no cuts yet")
	} else {
		fmt.Fprintf(w, "latest cut %d (%s), made %s ago\n", v.LatestSeq, v.LatestID, now.Sub(v.LatestAt).Round(time.Second))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tACKED\tLAG\tSTATE\tLAST ACK\tERROR")
	for _, r := range v.Targets {
		acked, last := "-", "-"
		if r.AckedSeq > 0 {
			acked = fmt.Sprintf("%d %s", r.AckedSeq, r.AckedID)
			last = r.AckedAt.In(c.Zone).Format("15:04:05")
		}
		lag := "0"
		if r.LagCuts > 0 {
			lag = fmt.Sprintf("%d cuts / %s", r.LagCuts, (time.Duration(r.LagSeconds) * time.Second).String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Target, acked, lag, r.State, last, oneLine(r.LastError))
	}
	tw.Flush()
}
