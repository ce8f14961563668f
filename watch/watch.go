// Package watch is the institute's view of what the public sees: each
// cycle it checks every difusor's public site over HTTP (as verify does:
// the served pointer, the signed manifest it belongs to, the files'
// hashes) and records the served cut beside the acknowledged one.
//
// Every check hashes the pointers and a window of the cut's other files
// that moves on each cycle, so that every file of the cut is checked
// within a day of cycles.
package watch

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/internal/webfetch"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/verify"
)

// Site is one difusor's public site.
type Site struct {
	Name string
	URL  string // base URL serving the difusor's root
}

// Watcher checks sites. Configure the fields, then call [Watcher.Check].
type Watcher struct {
	Client    *webfetch.Client
	PublicKey ed25519.PublicKey
	// DB, when set and writable, receives every check and keeps each
	// site's place in the rotation across restarts.
	DB  *state.DB
	Log *zap.Logger
	// Cycle is how often Check runs (the schedule's every); the window of
	// files per check is sized so that all of them are checked within
	// Day. Default 10 min.
	Cycle time.Duration
	Day   time.Duration // default 20 h: within the day, with room to spare
	Min   int           // files per check at least (default 20)
	Now   func() time.Time

	mu      sync.Mutex
	cursors map[string]int
}

// Result is one site's check.
type Result struct {
	Served state.Served
	Report *verify.Report // nil when the site was unreachable
}

// Check verifies every site at once and records the results. It never
// fails as a whole: a site that cannot be checked has a Served record that
// says why.
func (w *Watcher) Check(ctx context.Context, sites []Site) []Result {
	if w.Log == nil {
		w.Log = zap.NewNop()
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	out := make([]Result, len(sites))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = w.checkOne(ctx, s)
		}()
	}
	wg.Wait()
	// Recorded even when ctx ran out: a site that timed out is a finding.
	rctx := context.WithoutCancel(ctx)
	for _, r := range out {
		if w.DB == nil {
			break
		}
		if err := w.DB.AddServed(rctx, r.Served); err != nil {
			w.Log.Warn("record served cut", zap.Error(err))
			break
		}
	}
	if w.DB != nil {
		_ = w.DB.PruneServed(rctx, w.Now().Add(-7*24*time.Hour))
	}
	return out
}

func (w *Watcher) checkOne(ctx context.Context, s Site) Result {
	sv := state.Served{Target: s.Name, At: w.Now().UTC()}
	rep, err := verify.Run(ctx, verify.Options{URL: s.URL, PublicKey: w.PublicKey, Client: w.Client,
		Select:   func(m *packager.Manifest) []packager.Entry { return w.window(ctx, s.Name, m) },
		Attempts: 3, Settle: time.Second, Now: w.Now})
	if err != nil {
		sv.HTTPErrors = 1
		sv.Problem = "unreachable: " + termsafe.Clip(errText(err), 120)
		w.Log.Warn("public site not reachable", zap.String("target", s.Name), zap.String("url", s.URL), zap.String("error", termsafe.String(err.Error())))
		return Result{Served: sv}
	}
	sv.Seq, sv.CutID, sv.Manifest, sv.OK, sv.Checked = rep.Seq, rep.ID, rep.Manifest, rep.OK(), rep.Checked
	sv.Mismatches = len(rep.Mismatches)
	for _, m := range rep.Mismatches {
		if m.Status != 0 || m.Kind == verify.Unreadable {
			sv.HTTPErrors++
		}
	}
	if rep.ProblemStatus != 0 {
		sv.HTTPErrors++
	}
	sv.Problem = Problem(rep)
	if !sv.OK {
		w.Log.Warn("public site does not serve a signed cut exactly", zap.String("target", s.Name), zap.String("problem", sv.Problem))
	}
	return Result{Served: sv, Report: rep}
}

// Problem says in a few words (operator English) why a report is not OK:
// "403 on json/main.json", "2 files differ: changed datos/x.csv", "".
func Problem(rep *verify.Report) string {
	if rep.OK() {
		return ""
	}
	first := ""
	if len(rep.Mismatches) > 0 {
		m := rep.Mismatches[0]
		first = string(m.Kind) + " " + termsafe.Clip(m.Path, 80)
		if m.Status != 0 {
			first = fmt.Sprintf("%d on %s", m.Status, termsafe.Clip(m.Path, 80))
		}
	}
	switch rep.Problem {
	case verify.ProblemPointer:
		return first
	case verify.ProblemNoProof:
		if rep.ProblemStatus != 0 {
			return fmt.Sprintf("no signed proof served (%d on %s)", rep.ProblemStatus, packager.ProofIndexPath)
		}
		return "no signed proof served: " + termsafe.Clip(rep.ProblemDetail, 80)
	case verify.ProblemBadSignature:
		return "bad signature: the published manifest is not signed by this institute's key"
	case verify.ProblemNotSigned:
		return "json/main.json belongs to no signed cut the site lists"
	}
	if len(rep.Mismatches) == 1 {
		return first
	}
	return fmt.Sprintf("%d files differ: %s", len(rep.Mismatches), first)
}

// window returns this check's files of m (besides the pointers): the next
// n entries after the site's place in the rotation, which then moves on.
func (w *Watcher) window(ctx context.Context, site string, m *packager.Manifest) []packager.Entry {
	if len(m.Entries) == 0 {
		return nil
	}
	cycle, day, least := w.Cycle, w.Day, w.Min
	if cycle <= 0 {
		cycle = 10 * time.Minute
	}
	if day <= 0 {
		day = 20 * time.Hour
	}
	if least <= 0 {
		least = 20
	}
	checks := max(1, int(day/cycle))
	n := min(len(m.Entries), max(least, (len(m.Entries)+checks-1)/checks))
	key := "watch.cursor." + site
	w.mu.Lock()
	if w.cursors == nil {
		w.cursors = map[string]int{}
	}
	start, ok := w.cursors[site]
	w.mu.Unlock()
	if !ok && w.DB != nil {
		if v, found, err := w.DB.Meta(ctx, key); err == nil && found {
			start, _ = strconv.Atoi(v)
		}
	}
	start %= len(m.Entries)
	out := make([]packager.Entry, 0, n)
	for i := range n {
		out = append(out, m.Entries[(start+i)%len(m.Entries)])
	}
	next := (start + n) % len(m.Entries)
	w.mu.Lock()
	w.cursors[site] = next
	w.mu.Unlock()
	if w.DB != nil {
		_ = w.DB.SetMeta(ctx, key, strconv.Itoa(next)) // a read-only DB keeps it in memory only
	}
	return out
}

func errText(err error) string {
	var fe *webfetch.Error
	if errors.As(err, &fe) {
		if fe.Kind != nil && fe.Err != nil {
			return fe.Kind.Error() + ": " + fe.Err.Error()
		}
	}
	return err.Error()
}
