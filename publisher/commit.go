package publisher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/packager"
)

// splitPointers splits plan into the files that are not pointers of m and
// the pointers, the latter in m's order: the order of a commit.
func splitPointers(plan []staged, m *packager.Manifest) (rest, ptrs []staged) {
	for _, s := range plan {
		if m.IsPointer(s.e.Path) {
			ptrs = append(ptrs, s)
		} else {
			rest = append(rest, s)
		}
	}
	sort.Slice(ptrs, func(i, j int) bool {
		return indexOf(m.Pointers, ptrs[i].e.Path) < indexOf(m.Pointers, ptrs[j].e.Path)
	})
	return rest, ptrs
}

// renamesInFlight is how many renames a commit has in flight at once:
// they carry no data and open nothing, so a cut's files (a few hundred at
// a peak) go in one round trip, not one per few hundred.
const renamesInFlight = 1024

// commit renames staged files into place: all non-pointer files (several at
// once), then, once beforePointers (if not nil) succeeded, the pointer
// files one by one in manifest order.
func (r *targetRun) commit(ctx context.Context, plan []staged, m *packager.Manifest, beforePointers func() error) error {
	if err := r.flushStaged(ctx, plan); err != nil {
		return err
	}
	rest, ptrs := splitPointers(plan, m)
	// The destination directories, created while the files uploaded.
	if err := r.mkdirs(ctx, destDirs(plan)); err != nil {
		return err
	}
	r.prog("committing", 0, 0, 0, len(plan))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(renamesInFlight)
	for _, s := range rest {
		g.Go(func() error { return r.rename(gctx, s) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if beforePointers != nil {
		if err := beforePointers(); err != nil {
			return err
		}
	}
	for _, s := range ptrs {
		if err := r.rename(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (r *targetRun) rename(ctx context.Context, s staged) error {
	err := r.t.Rename(ctx, s.name, s.e.Path)
	if errors.Is(err, fs.ErrNotExist) {
		// The staged file is gone: a rename whose reply was lost with the
		// connection, or a cleaned staging directory. Send it again.
		r.forget(s.name)
		if err = r.upload(ctx, s, false); err == nil {
			if err = r.flushStaged(ctx, []staged{s}); err == nil {
				err = r.t.Rename(ctx, s.name, s.e.Path)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("commit %s: %w", s.e.Path, err)
	}
	r.forget(s.name) // consumed: a later attempt must upload again
	return nil
}

func (r *targetRun) forget(name string) {
	r.mu.Lock()
	delete(r.staged, name)
	delete(r.synced, name)
	r.mu.Unlock()
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s)
}

// ackStaging is the staging name of the ack.
const ackStaging = StagingDir + "/ack.json"

// writeAck writes the ack atomically: staged, then renamed over the old one.
func (r *targetRun) writeAck(ctx context.Context, a *Ack) error {
	if err := r.stageAck(ctx, a); err != nil {
		return err
	}
	return r.placeAck(ctx)
}

// stageAck writes a to the ack's staging name, flushed; nothing reads it
// there.
func (r *targetRun) stageAck(ctx context.Context, a *Ack) error {
	if err := r.mkdirs(ctx, []string{StagingDir}); err != nil {
		return err
	}
	data := a.Encode()
	if err := r.t.WriteFile(ctx, ackStaging, strings.NewReader(string(data)), int64(len(data))); err != nil {
		return fmt.Errorf("write ack: %w", err)
	}
	return nil
}

// placeAck renames the staged ack over the target's ack.
func (r *targetRun) placeAck(ctx context.Context) error {
	if err := r.t.Rename(ctx, ackStaging, AckPath); err != nil {
		return fmt.Errorf("write ack: %w", err)
	}
	return nil
}
