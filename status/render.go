package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
)

// WriteTable writes the view for a terminal: a header line with the latest
// cut and the counts, then one line per target, worst first. Times of day
// are shown in zone.
func (v *View) WriteTable(w io.Writer, zone *time.Location) error {
	if v.Latest == nil {
		fmt.Fprintf(w, "no cuts yet · %d difusores\n", v.Counts.Targets)
	} else {
		fmt.Fprintf(w, "latest cut %d (%s), made %s ago · %d difusores: %d ok, %d pushing, %d retrying, %d failing · %d over max lag (%s)\n",
			v.Latest.Seq, v.Latest.ID, secs(v.Latest.AgeSeconds), v.Counts.Targets, v.Counts.Acked, v.Counts.Pushing,
			v.Counts.Retrying, v.Counts.Failing, v.Counts.Behind, secs(v.MaxLagSeconds))
	}
	if v.Counts.NotServed > 0 {
		fmt.Fprintf(w, "%d acked but not served by their public site\n", v.Counts.NotServed)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	served := v.anyServed() // the SERVED column, once sites are checked over HTTP
	if served {
		fmt.Fprintln(tw, "TARGET\tACKED\tSERVED\tLAG\tSTATE\tMB/S\tSENT (CUT)\tLAST ACK")
	} else {
		fmt.Fprintln(tw, "TARGET\tACKED\tLAG\tSTATE\tMB/S\tSENT (CUT)\tLAST ACK")
	}
	for _, t := range v.Targets {
		acked, lastAck := "-", "-"
		if t.AckedSeq > 0 {
			acked = fmt.Sprintf("%d %s", t.AckedSeq, t.AckedID)
			lastAck = t.AckedAt.In(zone).Format("15:04:05")
		}
		lag := "0"
		if t.LagCuts > 0 {
			lag = fmt.Sprintf("%d cuts, %s", t.LagCuts, secs(t.LagSeconds))
			if t.LagCuts == 1 {
				lag = fmt.Sprintf("1 cut, %s", secs(t.LagSeconds))
			}
			if t.Behind {
				lag += " !"
			}
		}
		rate := "-"
		if t.LastPushMBps > 0 {
			rate = fmt.Sprintf("%.1f", t.LastPushMBps)
		}
		sent := "-"
		if t.State == StatePushing && t.BytesTotal > 0 {
			sent = fmt.Sprintf("%s / %s (%d)", FormatBytes(t.BytesDone), FormatBytes(t.BytesTotal), t.PushingSeq)
		}
		detail := t.Detail
		if t.Probe != nil && !t.Probe.Agrees {
			if t.Probe.Error != "" {
				detail += " · probe: " + ShortCause(t.Probe.Error, 50)
			} else {
				detail += fmt.Sprintf(" · probe: target says cut %d", t.Probe.RemoteSeq)
			}
		}
		if served {
			acked += "\t" + t.servedCell()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, acked, lag, detail, rate, sent, lastAck)
	}
	return tw.Flush()
}

// secs formats seconds as a short duration.
func secs(s float64) string {
	return (time.Duration(s) * time.Second).String()
}

// FormatBytes formats n with a binary-prefixed unit: "512 B", "40.0 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ProbeTargets reads every target's own ack.json (concurrently, each within
// ctx) and records in the view whether it agrees with the local mirror.
// open returns the target of a name; the caller closes targets.
func (v *View) ProbeTargets(ctx context.Context, open func(name string) (targets.Target, error)) {
	var wg sync.WaitGroup
	for i := range v.Targets {
		t := &v.Targets[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Probe = probe(ctx, t, open)
		}()
	}
	wg.Wait()
}

func probe(ctx context.Context, t *Target, open func(string) (targets.Target, error)) *Probe {
	tg, err := open(t.Name)
	if err != nil {
		return &Probe{Error: err.Error()}
	}
	data, err := tg.ReadFile(ctx, publisher.AckPath)
	if errors.Is(err, fs.ErrNotExist) {
		return &Probe{Agrees: t.AckedSeq == 0}
	}
	if err != nil {
		return &Probe{Error: err.Error()}
	}
	a, err := publisher.ParseAck(data)
	if err != nil {
		return &Probe{Error: "unreadable ack: " + err.Error()}
	}
	return &Probe{RemoteSeq: a.Seq, RemoteID: a.ID, RemoteManifest: a.Manifest, Agrees: a.Seq == t.AckedSeq && a.ID == t.AckedID}
}

// Disagreements counts probed targets whose remote ack differs from the
// local mirror or could not be read.
func (v *View) Disagreements() int {
	n := 0
	for _, t := range v.Targets {
		if t.Probe != nil && !t.Probe.Agrees {
			n++
		}
	}
	return n
}
