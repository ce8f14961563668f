package publisher

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/packager"
)

// planRetire merges the files that left the manifest into the retired
// list and splits it: keep (still inside the retention window) and due
// (to delete now). A path that is a file of m again is dropped.
func (r *targetRun) planRetire(prev []Retired, m *packager.Manifest, gone []string, now time.Time) (keep, due []Retired) {
	byPath := map[string]Retired{}
	for _, x := range prev {
		byPath[x.Path] = x
	}
	for _, p := range gone {
		if _, ok := byPath[p]; !ok {
			byPath[p] = Retired{Path: p, Since: now.UTC().Truncate(time.Second)}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		x := byPath[p]
		if _, ok := m.Lookup(p); ok {
			continue // back in the cut
		}
		if now.Sub(x.Since) < r.e.RetentionWindow {
			keep = append(keep, x)
		} else {
			due = append(due, x)
		}
	}
	return keep, due
}

func sortedRetired(rs []Retired) []Retired {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Path < rs[j].Path })
	return rs
}

// deleteRetired deletes the due files from the target, several at once,
// then the directories they leave empty. A file already gone is fine.
func (r *targetRun) deleteRetired(ctx context.Context, due, keep []Retired, m *packager.Manifest) error {
	if len(due) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	paths := make([]string, len(due))
	for i, x := range due {
		paths[i] = x.Path
		g.Go(func() error {
			if err := r.t.Remove(gctx, x.Path); err != nil {
				return fmt.Errorf("delete retired %s: %w", x.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.removeEmptyDirs(ctx, paths, m, keep)
	return nil
}

// removeEmptyDirs removes the directories that held deleted files and hold
// nothing prepcast knows of any more (no file of m, no file still retired),
// deepest first. It is best effort: a directory that still holds something
// else (a difusor's own file) stays.
func (r *targetRun) removeEmptyDirs(ctx context.Context, deleted []string, m *packager.Manifest, keep []Retired) {
	used := map[string]bool{}
	mark := func(p string) {
		for d := path.Dir(p); d != "." && !used[d]; d = path.Dir(d) {
			used[d] = true
		}
	}
	for _, e := range m.Entries {
		mark(e.Path)
	}
	for _, x := range keep {
		mark(x.Path)
	}
	cand := map[string]bool{}
	for _, p := range deleted {
		for d := path.Dir(p); d != "." && !used[d]; d = path.Dir(d) {
			cand[d] = true
		}
	}
	dirs := make([]string, 0, len(cand))
	for d := range cand {
		dirs = append(dirs, d)
	}
	// Deepest first, so that a parent is empty by the time it is removed.
	sort.Slice(dirs, func(i, j int) bool {
		if a, b := strings.Count(dirs[i], "/"), strings.Count(dirs[j], "/"); a != b {
			return a > b
		}
		return dirs[i] < dirs[j]
	})
	// One depth at a time, the directories of a depth all at once.
	for len(dirs) > 0 {
		depth := strings.Count(dirs[0], "/")
		n := 0
		for n < len(dirs) && strings.Count(dirs[n], "/") == depth {
			n++
		}
		var g errgroup.Group
		g.SetLimit(r.e.filesInFlight())
		for _, d := range dirs[:n] {
			g.Go(func() error {
				if err := r.t.Remove(ctx, d); err != nil {
					r.log.Debug("retired directory not removed", zap.String("dir", d), zap.Error(err))
					return nil
				}
				r.dirsMu.Lock()
				delete(r.dirs, d)
				r.dirsMu.Unlock()
				return nil
			})
		}
		_ = g.Wait()
		dirs = dirs[n:]
	}
}
