package publisher

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// readAckMax returns the target's ack, nil if it has none or it is
// unusable: unreadable garbage, or larger than max bytes (see AckMax). The
// target is then reconciled, and the push writes a fresh ack.
func (r *targetRun) readAckMax(ctx context.Context, max int64) (*Ack, error) {
	data, err := targets.ReadFileMax(ctx, r.t, AckPath, max)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, targets.ErrTooLarge) {
		r.log.Warn("target's ack is larger than any ack prepcast writes; reconciling", zap.Error(err))
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ack: %w", err)
	}
	a, err := ParseAck(data)
	if err != nil {
		r.log.Warn("target's ack is unreadable; reconciling", zap.Error(err))
		return nil, nil
	}
	return a, nil
}

// listMax bounds the files a listing of a target may report for a cut of
// n entries: the cut, files retired from earlier cuts, and what the
// difusor keeps of its own. A root that lists more is refused rather than
// held in memory.
func listMax(n int) int { return 4*n + listSlack }

// listSlack is what a difusor may keep of its own beyond 4 files per
// file of the cut (a variable for tests).
var listSlack = 100_000

// listRoot lists the target's files outside prepcast's own directories (the
// private one and the public proof), with
// their sizes (-1 for a symbolic link, which a real file replaces), at most
// listMax(len(m.Entries)) of them.
func (r *targetRun) listRoot(ctx context.Context, m *packager.Manifest) (map[string]int64, error) {
	limit := listMax(len(m.Entries))
	have := map[string]int64{}
	err := r.t.Walk(ctx, "", func(fi targets.FileInfo) error {
		if fi.Path == safepath.Reserved || strings.HasPrefix(fi.Path, safepath.Reserved+"/") ||
			fi.Path == safepath.PublicReserved || strings.HasPrefix(fi.Path, safepath.PublicReserved+"/") {
			return nil
		}
		if len(have) >= limit {
			return targets.Permanent(fmt.Errorf("difusor %s lists more than %d files under its root for a cut of %d; remove what does not belong to the PREP site from the root",
				r.t.Name(), limit, len(m.Entries)))
		}
		if fi.Symlink {
			have[fi.Path] = -1
		} else {
			have[fi.Path] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list target: %w", err)
	}
	return have, nil
}

// reconcile lists the target and returns the entries it lacks or holds
// with other content: another size, or the same size and another SHA-256
// (every such file is read back and hashed, at most its manifest size), and
// the files it has that the cut does not.
func (r *targetRun) reconcile(ctx context.Context, m *packager.Manifest) (changed []packager.Entry, gone []string, listed int, err error) {
	have, err := r.listRoot(ctx, m)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reconcile: %w", err)
	}
	listed = len(have)
	var same []packager.Entry
	for _, e := range m.Entries {
		if sz, ok := have[e.Path]; !ok || sz != e.Size || m.IsPointer(e.Path) {
			changed = append(changed, e)
		} else {
			same = append(same, e)
		}
		delete(have, e.Path)
	}
	// A file of the right size may still hold other bytes.
	differ, err := r.hashCheck(ctx, same)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reconcile: %w", err)
	}
	if len(differ) > 0 {
		changed = mergeByPath(m, changed, differ)
	}
	// Files the cut does not have are left alone: without an ack prepcast
	// cannot tell its own old files from the difusor's.
	r.log.Info("reconciled target by listing", zap.Int("listed", listed), zap.Int("differing", len(changed)),
		zap.Int("same_size_other_content", len(differ)), zap.Int("not_in_cut_left_in_place", len(have)))
	return changed, nil, listed, nil
}

// mergeByPath returns the entries of m found in a or b, in manifest order.
func mergeByPath(m *packager.Manifest, a, b []packager.Entry) []packager.Entry {
	in := make(map[string]bool, len(a)+len(b))
	for _, e := range a {
		in[e.Path] = true
	}
	for _, e := range b {
		in[e.Path] = true
	}
	out := make([]packager.Entry, 0, len(in))
	for _, e := range m.Entries {
		if in[e.Path] {
			out = append(out, e)
		}
	}
	return out
}

// hashCheck reads back every entry's file on the target (FilesInFlight at
// once, each at most its manifest size) and returns the entries whose file
// is missing, larger, shorter or holds other bytes, in the order given.
// Other errors (the connection, a timeout) are returned.
func (r *targetRun) hashCheck(ctx context.Context, entries []packager.Entry) ([]packager.Entry, error) {
	bad, _, err := r.hashCheckUntil(ctx, ctx, entries)
	return bad, err
}

// hashCheckUntil is hashCheck that stops once budget is done (ctx must
// outlive it): done tells which entries were checked, and bad lists only
// checked ones. Only an error while budget lasts is returned.
func (r *targetRun) hashCheckUntil(ctx, budget context.Context, entries []packager.Entry) (bad []packager.Entry, done []bool, err error) {
	isBad := make([]bool, len(entries))
	done = make([]bool, len(entries))
	g, gctx := errgroup.WithContext(budget)
	g.SetLimit(r.e.filesInFlight())
	var mu sync.Mutex
	for i, e := range entries {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			sum, n, err := targets.HashFile(gctx, r.t, e.Path, e.Size)
			differs := true
			switch {
			case errors.Is(err, fs.ErrNotExist), errors.Is(err, targets.ErrTooLarge):
			case err != nil && budget.Err() != nil && ctx.Err() == nil:
				return nil // out of time: not checked
			case err != nil:
				return fmt.Errorf("read back %s: %w", e.Path, err)
			case n == e.Size && hex.EncodeToString(sum[:]) == e.SHA256:
				differs = false
			}
			mu.Lock()
			done[i], isBad[i] = true, differs
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for i, e := range entries {
		if isBad[i] {
			bad = append(bad, e)
		}
	}
	return bad, done, nil
}

// safe escapes text that came from a difusor for a log line or a message.
func safe(s string) string { return termsafe.String(s) }
