package publisher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// VerifyReadMax is the largest file that verification reads back and
// hashes; larger ones (acta images) are checked by size.
const VerifyReadMax = 4 << 20

// verify checks that the target holds cut c as its ack claims: every file
// present with the manifest's size, and files up to VerifyReadMax read back
// and hashed. Whatever differs (tampered, truncated, deleted) is sent
// again and committed, pointers last. It returns the paths repaired.
func (r *targetRun) verify(ctx context.Context, c *cutRef) ([]string, error) {
	have := map[string]int64{}
	err := r.t.Walk(ctx, "", func(fi targets.FileInfo) error {
		if !fi.Symlink && !strings.HasPrefix(fi.Path, safepath.Reserved+"/") {
			have[fi.Path] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: list target: %w", err)
	}
	var mu sync.Mutex
	var bad []packager.Entry
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	for _, e := range c.m.Entries {
		if sz, ok := have[e.Path]; !ok || sz != e.Size {
			bad = append(bad, e)
			continue
		}
		if e.Size > VerifyReadMax {
			continue
		}
		g.Go(func() error {
			data, err := r.t.ReadFile(gctx, e.Path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("verify %s: %w", e.Path, err)
			}
			sum := sha256.Sum256(data)
			if err != nil || hex.EncodeToString(sum[:]) != e.SHA256 {
				mu.Lock()
				bad = append(bad, e)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(bad) == 0 {
		return nil, nil
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Path < bad[j].Path })
	paths := make([]string, len(bad))
	var need int64
	for i, e := range bad {
		paths[i] = e.Path
		need += e.Size
	}
	r.log.Warn("files on the difusor differ from the cut it acknowledges; sending them again",
		zap.Int64("seq", c.m.Seq), zap.Int("files", len(bad)), zap.Strings("paths", paths[:min(len(paths), 20)]))
	if err := r.prepareStaging(ctx); err != nil {
		return nil, err
	}
	plan := stagingPlan(bad)
	if err := r.stage(ctx, plan, need); err != nil {
		return nil, err
	}
	if err := r.commit(ctx, plan, c.m); err != nil {
		return nil, err
	}
	return paths, nil
}

// readAck returns the target's ack, nil if it has none or it is unreadable
// garbage (the target is then reconciled).
func (r *targetRun) readAck(ctx context.Context) (*Ack, error) {
	data, err := r.t.ReadFile(ctx, AckPath)
	if errors.Is(err, fs.ErrNotExist) {
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

// reconcile lists the target and returns the entries it lacks or holds
// with another size, and the files it has that the cut does not.
func (r *targetRun) reconcile(ctx context.Context, m *packager.Manifest) (changed []packager.Entry, gone []string, listed int, err error) {
	have := map[string]int64{}
	err = r.t.Walk(ctx, "", func(fi targets.FileInfo) error {
		if fi.Path == safepath.Reserved || strings.HasPrefix(fi.Path, safepath.Reserved+"/") {
			return nil
		}
		if fi.Symlink {
			have[fi.Path] = -1 // replaced by the real file
			return nil
		}
		have[fi.Path] = fi.Size
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reconcile: list target: %w", err)
	}
	listed = len(have)
	for _, e := range m.Entries {
		if sz, ok := have[e.Path]; !ok || sz != e.Size || m.IsPointer(e.Path) {
			changed = append(changed, e)
		}
		delete(have, e.Path)
	}
	// Files the cut does not have are left alone: without an ack prepcast
	// cannot tell its own old files from the difusor's.
	r.log.Info("reconciled target by listing", zap.Int("listed", listed), zap.Int("differing", len(changed)), zap.Int("not_in_cut_left_in_place", len(have)))
	return changed, nil, listed, nil
}
