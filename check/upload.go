package check

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prepcast/prepcast/internal/termsafe"
)

// Bounds of the upload test's scratch files: each worker rewrites one file,
// sized to about a quarter of a second of upload, so the test ends soon
// after its window and uses little disk.
const (
	minChunk      = 1 << 20 // twice what the uploader reads ahead per file
	maxChunk      = 8 << 20
	maxWorkers    = 16
	sampleEvery   = 50 * time.Millisecond
	maxRampUp     = time.Second
	chunkDuration = 250 * time.Millisecond
)

// uploadRow measures the sustained upload rate: scratch files uploaded
// with as many files in flight as a push uses, for the configured time,
// without the ramp-up (up to the first second, or the first quarter of a
// short window). Upload tests of different difusores run one at a time.
func (r *runner) uploadRow(ctx context.Context, s *sshState, scratch string) Row {
	row := Row{ID: RowUploadRate, Threshold: "≥ " + fmtRate(float64(r.th.MinUploadRate)), Unit: "bytes/s"}
	r.uploadMu.Lock()
	defer r.uploadMu.Unlock()
	window := time.Duration(r.th.UploadTest * float64(time.Second))
	rate, total, err := measureUpload(ctx, window, min(max(1, r.o.Config.Limits.FilesInFlight), maxWorkers),
		func(ctx context.Context, i int, rd io.Reader, size int64) error {
			return s.tgt.WriteFileNoSync(ctx, path.Join(scratch, fmt.Sprintf("upload-%02d", i)), rd, size)
		})
	if err != nil {
		row.Verdict, row.Value, row.Detail = Fail, "not measured", "upload: "+termsafe.String(err.Error())
		return row
	}
	row.Value, row.Number = fmtRate(rate), num(rate)
	row.Detail = fmt.Sprintf("sustained over %.1f s after the ramp-up; %.1f MB uploaded in all", window.Seconds(), float64(total)/1e6)
	row.Verdict = Pass
	if rate < float64(r.th.MinUploadRate) {
		row.Verdict = Fail
		row.Fix = fixUpload
	}
	return row
}

// measureUpload runs workers that upload scratch data with put until
// window has passed, and returns the rate over the window after the
// ramp-up and the bytes sent.
func measureUpload(ctx context.Context, window time.Duration, workers int, put func(ctx context.Context, i int, r io.Reader, size int64) error) (float64, int64, error) {
	noise := make([]byte, 1<<20)
	_, _ = rand.Read(noise) // incompressible, whatever the link does
	var sent atomic.Int64
	var chunk atomic.Int64
	chunk.Store(minChunk)
	start := time.Now()
	deadline := start.Add(window)
	ramp := min(maxRampUp, window/4)

	type sample struct {
		at time.Duration
		n  int64
	}
	var samples []sample
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tk := time.NewTicker(sampleEvery)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tk.C:
				el := now.Sub(start)
				n := sent.Load()
				samples = append(samples, sample{el, n})
				// Size the next files to about chunkDuration of upload each
				// at the rate so far.
				if el > 0 {
					per := float64(n) / el.Seconds() / float64(workers) * chunkDuration.Seconds()
					chunk.Store(int64(min(max(per, minChunk), maxChunk)))
				}
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				size := chunk.Load()
				if err := put(ctx, w, &noiseReader{noise: noise, left: size, sent: &sent}, size); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	sampler.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, sent.Load(), err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, sent.Load(), err
	}
	// The slope of the bytes sent against time, fitted (least squares)
	// over the samples between the ramp-up and the end of the window, so
	// that the steps of files opening and closing do not weigh on where
	// the window's edges fall.
	var k, st, sn, stt, stn float64
	var first, last int64 = -1, -1
	for _, sm := range samples {
		if sm.at < ramp || sm.at > window {
			continue
		}
		x, y := sm.at.Seconds(), float64(sm.n)
		k++
		st += x
		sn += y
		stt += x * x
		stn += x * y
		if first < 0 {
			first = sm.n
		}
		last = sm.n
	}
	den := k*stt - st*st
	if k < 3 || den <= 0 || last == first {
		// Too short a window to fit: everything sent over the whole run,
		// ramp included.
		return float64(sent.Load()) / time.Since(start).Seconds(), sent.Load(), nil
	}
	return max(0, (k*stn-st*sn)/den), sent.Load(), nil
}

// noiseReader yields left bytes of noise, counting them in sent as the
// uploader takes them. The uploader reads at most its window of requests
// in flight (512 KiB a file) ahead of what the server acknowledged, the
// same at both ends of a steady window, so the slope of this count is the
// rate the server takes.
type noiseReader struct {
	noise []byte
	off   int
	left  int64
	sent  *atomic.Int64
}

func (n *noiseReader) Read(p []byte) (int, error) {
	if n.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > n.left {
		p = p[:n.left]
	}
	k := copy(p, n.noise[n.off:])
	n.off = (n.off + k) % len(n.noise)
	n.left -= int64(k)
	n.sent.Add(int64(k))
	return k, nil
}
