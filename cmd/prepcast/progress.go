package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/status"
)

// progressView shows a push as it goes: live bars on a terminal, one plain
// line per milestone elsewhere (cron mail, a log file).
type progressView interface {
	update(publisher.Progress)
	close()
}

func newProgressView(w io.Writer) progressView {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barView{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(32)), bars: map[string]*targetBar{}}
	}
	return &lineView{w: w, last: map[string]string{}}
}

// lineView prints a line when a target's push changes state.
type lineView struct {
	mu   sync.Mutex
	w    io.Writer
	last map[string]string
}

func (v *lineView) update(p publisher.Progress) {
	key := fmt.Sprintf("%s %d", p.State, p.Seq)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last[p.Target] == key {
		return
	}
	v.last[p.Target] = key
	switch p.State {
	case "staging":
		fmt.Fprintf(v.w, "%s: cut %d (%s): sending %d files, %s\n", p.Target, p.Seq, p.CutID, p.FilesTotal, status.FormatBytes(p.BytesTotal))
	case "committing":
		fmt.Fprintf(v.w, "%s: cut %d: committing, pointers last\n", p.Target, p.Seq)
	case "ok":
		fmt.Fprintf(v.w, "%s: cut %d acknowledged\n", p.Target, p.Seq)
	case "retrying":
		fmt.Fprintf(v.w, "%s: cut %d: attempt %d failed, retrying: %s\n", p.Target, p.Seq, p.Attempt, status.Cause(p.LastError))
	case "failing":
		fmt.Fprintf(v.w, "%s: cut %d: FAILED: %s\n", p.Target, p.Seq, status.Cause(p.LastError))
	}
}

func (v *lineView) close() {}

// barView draws one bar per target on a terminal.
type barView struct {
	mu   sync.Mutex
	p    *mpb.Progress
	bars map[string]*targetBar
}

// targetBar is one target's bar. The label is read by the bar's own
// goroutine while it renders, so it is atomic: holding a lock while calling
// the bar's methods (which wait for that goroutine) would deadlock.
type targetBar struct {
	bar   *mpb.Bar
	label atomic.Value // string
	ops   sync.Mutex   // orders the calls on bar; never held while it renders
	total int64
}

func (v *barView) update(p publisher.Progress) {
	v.mu.Lock()
	tb, ok := v.bars[p.Target]
	if !ok {
		tb = &targetBar{}
		tb.label.Store(p.State)
		name := p.Target
		// Total 0: the bar does not complete by itself before SetTotal.
		tb.bar = v.p.New(0, mpb.BarStyle(),
			mpb.PrependDecorators(
				decor.Name(name, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { return tb.label.Load().(string) }, decor.WCSyncSpaceR),
			),
			mpb.AppendDecorators(
				decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_MMSS, decor.WCSyncSpace), ""),
			),
		)
		v.bars[p.Target] = tb
	}
	v.mu.Unlock()
	label := p.State
	if p.Seq > 0 {
		label = fmt.Sprintf("cut %d %s", p.Seq, p.State)
	}
	switch p.State {
	case "retrying":
		label = fmt.Sprintf("cut %d retrying (attempt %d)", p.Seq, p.Attempt)
	case "failing":
		label = "FAILED: " + clipRunes(status.Cause(p.LastError), 60)
	}
	tb.label.Store(label)
	tb.ops.Lock()
	defer tb.ops.Unlock()
	switch p.State {
	case "staging":
		if p.BytesTotal > 0 && tb.total != p.BytesTotal {
			tb.total = p.BytesTotal
			tb.bar.SetTotal(p.BytesTotal, false)
		}
		if p.BytesDone < p.BytesTotal {
			tb.bar.SetCurrent(p.BytesDone)
		}
	case "ok":
		tb.bar.SetTotal(max(tb.bar.Current(), 1), true)
	case "failing":
		tb.bar.Abort(false)
	}
}

func (v *barView) close() {
	v.mu.Lock()
	for _, tb := range v.bars {
		if !tb.bar.Completed() && !tb.bar.Aborted() {
			tb.bar.Abort(false)
		}
	}
	v.mu.Unlock()
	v.p.Wait()
}

// clipRunes bounds s, already escaped, to n runes with "…".
func clipRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
