package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync/atomic"
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
	var got atomic.Int64
	stop := make(chan struct{})
	failed := make(chan error, 1)
	start := time.Now()
	go func() {
		// A request the server never answers keeps this until the
		// connection closes.
		defer f.Close()
		buf := make([]byte, readBackChunk)
		var off int64
		for {
			select {
			case <-stop:
				failed <- nil
				return
			default:
			}
			n, err := f.ReadAt(buf, off)
			got.Add(int64(n))
			off += int64(n)
			switch {
			case errors.Is(err, io.EOF) && off > 0:
				off = 0 // read it again from the start
			case errors.Is(err, io.EOF):
				failed <- errors.New("the file is empty")
				return
			case err != nil:
				failed <- err
				return
			}
		}
	}()
	select {
	case err = <-failed:
	case <-time.After(readBackWindow):
		close(stop)
		select {
		case err = <-failed:
		case <-time.After(2 * readBackWindow): // the last request, unanswered
		}
	case <-ctx.Done():
		close(stop)
		row.Verdict, row.Value, row.Detail = Warn, "not measured", ctx.Err().Error()
		return row
	}
	if err != nil && got.Load() == 0 {
		// (A failure after some bytes still gives their rate.)
		row.Verdict, row.Value, row.Detail = Warn, "not measured", "read back: "+termsafe.String(err.Error())
		return row
	}
	n := got.Load()
	secs := time.Since(start).Seconds()
	rate := float64(n) / secs
	row.Value, row.Number = fmtKB(rate), num(rate)
	if rate >= 1e6 {
		row.Value = fmtRate(rate)
	}
	row.Detail = fmt.Sprintf("%d bytes read back in %.1f s, one %d KiB request at a time", n, secs, readBackChunk>>10)
	row.Verdict = Pass
	if rate < readBackFloor {
		row.Verdict = Warn
		row.Detail += fmt.Sprintf("; the server throttles downloads: each push re-reads a slice of the cut for at most verify.time_per_push (%s), so re-reading the whole cut takes longer than verify.period (%s)",
			r.o.Config.Verify.TimePerPush, r.o.Config.Verify.Period)
		row.Fix = fixReadBack
	}
	return row
}
