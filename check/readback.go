package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/prepcast/prepcast/internal/termsafe"
)

// The read-back test: one request of readBackChunk at a time for
// readBackWindow (the last one waited for up to two windows more), so that
// a throttled server is left with at most one small request to answer.
const (
	readBackWindow = 2 * time.Second
	readBackChunk  = 16 << 10
	// readBackFloor is the slowest rate that is not a throttle: one
	// request at a time over a 300 ms round trip.
	readBackFloor = 50e3
)

// readBackRow measures how fast the server sends a file back, which is
// what every push's rotating verification does (a slice of the cut,
// within verify.time_per_push). The call asks nothing of downloads, so a
// server that throttles them is a warning: the rotation then takes longer
// than verify.period to re-read the whole cut. It reads the upload test's
// first scratch file.
func (r *runner) readBackRow(ctx context.Context, s *sshState, scratch string) Row {
	row := Row{ID: RowReadBackRate, Threshold: "≥ " + fmtKB(readBackFloor), Unit: "bytes/s"}
	f, err := s.probe.sftp.Open(path.Join(s.root, scratch, "upload-00"))
	if err != nil {
		row.Verdict, row.Value, row.Detail = Warn, "not measured", "open the upload test's file: "+termsafe.String(err.Error())
		return row
	}
	defer func() { go f.Close() }()
	type reply struct {
		n   int
		err error
	}
	buf := make([]byte, readBackChunk)
	start := time.Now()
	end := start.Add(readBackWindow)
	var got, off int64
	for time.Now().Before(end) {
		ch := make(chan reply, 1)
		go func() {
			n, err := f.ReadAt(buf, off)
			ch <- reply{n, err}
		}()
		var rp reply
		select {
		case rp = <-ch:
		case <-time.After(time.Until(end) + 2*readBackWindow):
			rp.err = errors.New("no answer") // counted as nothing more
		case <-ctx.Done():
			row.Verdict, row.Value, row.Detail = Warn, "not measured", ctx.Err().Error()
			return row
		}
		got += int64(rp.n)
		off += int64(rp.n)
		if errors.Is(rp.err, io.EOF) {
			off = 0 // read it again from the start
			continue
		}
		if rp.err != nil {
			if rp.n == 0 && got == 0 && rp.err.Error() != "no answer" {
				row.Verdict, row.Value, row.Detail = Warn, "not measured", "read back: "+termsafe.String(rp.err.Error())
				return row
			}
			break
		}
	}
	secs := time.Since(start).Seconds()
	rate := float64(got) / secs
	row.Value, row.Number = fmtKB(rate), num(rate)
	if rate >= 1e6 {
		row.Value = fmtRate(rate)
	}
	row.Detail = fmt.Sprintf("%d bytes read back in %.1f s, one %d KiB request at a time", got, secs, readBackChunk>>10)
	row.Verdict = Pass
	if rate < readBackFloor {
		row.Verdict = Warn
		row.Detail += fmt.Sprintf("; the server throttles downloads: each push re-reads a slice of the cut for at most verify.time_per_push (%s), so re-reading the whole cut takes longer than verify.period (%s)",
			r.o.Config.Verify.TimePerPush, r.o.Config.Verify.Period)
		row.Fix = fixReadBack
	}
	return row
}

func fmtKB(bps float64) string { return fmt.Sprintf("%.1f KB/s", bps/1e3) }
