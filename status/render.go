package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
)

// WriteTable writes the view for a terminal: a header line with the latest
// cut and the counts, then one line per target, worst first, each error by
// its cause (see [Cause]); below the table, the whole text of every error
// the table had to shorten. Times of day are shown in zone. All text that
// came from a difusor is escaped.
func (v *View) WriteTable(w io.Writer, zone *time.Location) error {
	return v.writeTable(w, zone, false)
}

// WriteTableVerbose is [View.WriteTable] with the whole text of every error
// of a target that is not ok below the table.
func (v *View) WriteTableVerbose(w io.Writer, zone *time.Location) error {
	return v.writeTable(w, zone, true)
}

func (v *View) writeTable(w io.Writer, zone *time.Location, verbose bool) error {
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
	var names []string
	full := map[string]string{}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	served := v.anyServed() // the SERVED column, once sites are checked over HTTP
	if served {
		fmt.Fprintln(tw, "TARGET\tACKED\tSERVED\tLAG\tSTATE\tMB/S\tSENT (CUT)\tLAST ACK\tCAUSE")
	} else {
		fmt.Fprintln(tw, "TARGET\tACKED\tLAG\tSTATE\tMB/S\tSENT (CUT)\tLAST ACK\tCAUSE")
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
		detail, cause := t.StateWords(), ""
		if t.State != StateOK && t.LastError != "" {
			cause = Cause(t.LastError)
			if verbose || Clipped(t.LastError) {
				names = append(names, t.Name)
				full[t.Name] = t.LastError
			}
		}
		if t.Probe != nil && !t.Probe.Agrees {
			if t.Probe.Error != "" {
				cause = strings.TrimPrefix(cause+" · probe: "+Cause(t.Probe.Error), " · ")
				if verbose || Clipped(t.Probe.Error) {
					names = append(names, t.Name+" (probe)")
					full[t.Name+" (probe)"] = t.Probe.Error
				}
			} else {
				detail += fmt.Sprintf(" · probe: target says cut %d", t.Probe.RemoteSeq)
			}
		}
		if cause == "" {
			cause = "-"
		}
		if served {
			acked += "\t" + t.servedCell()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, acked, lag, detail, rate, sent, lastAck, cause)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	WriteErrors(w, names, full)
	return nil
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
			t.Probe = probe(ctx, t, v.latestFiles, open)
		}()
	}
	wg.Wait()
}

// probe reads the target's ack, at most publisher.AckMax(files) bytes.
func probe(ctx context.Context, t *Target, files int, open func(string) (targets.Target, error)) *Probe {
	tg, err := open(t.Name)
	if err != nil {
		return &Probe{Error: err.Error()}
	}
	data, err := targets.ReadFileMax(ctx, tg, publisher.AckPath, publisher.AckMax(files))
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
