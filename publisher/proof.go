package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// publishProof places cut c's public proof on the target (see
// [packager.ProofDir]): the canonical manifest and its signature under
// names of their own, then the index listing c, replaced atomically. It runs
// before any file of c is committed, so whoever finds c's pointer finds c's
// manifest listed. A cut is listed until the retention window after a newer
// cut replaced it has passed (as its files are kept); the cut the target
// acknowledges (acked, 0 for none) is never dropped, since it may still be
// served if this push fails. Proof files no longer listed are deleted.
func (r *targetRun) publishProof(ctx context.Context, c *cutRef, acked int64) error {
	now := r.e.now().UTC().Truncate(time.Second)
	old := r.readProofIndex(ctx)
	listed := false
	for _, pc := range old.Cuts {
		if pc.Seq == c.m.Seq && pc.Manifest == c.manifest {
			listed = true
		}
	}
	next := &packager.ProofIndex{Format: packager.ProofIndexFormat}
	for _, pc := range old.Cuts {
		switch {
		case pc.Seq > c.m.Seq || (pc.Seq == c.m.Seq && pc.Manifest != c.manifest):
			continue // a cut that never was, as far as this store knows
		case pc.Seq < c.m.Seq && pc.Replaced == nil:
			t := now
			pc.Replaced = &t
		}
		if pc.Seq != c.m.Seq && pc.Seq != acked && pc.Replaced != nil && now.Sub(*pc.Replaced) >= r.e.RetentionWindow {
			continue // retired with its files
		}
		next.Cuts = append(next.Cuts, pc)
	}
	if !listed {
		next.Cuts = append(next.Cuts, packager.NewProofCut(c.m, c.mbytes, now))
	}
	data := next.Encode()
	if listed && bytes.Equal(data, old.Encode()) {
		return nil // nothing new: this is the cheap path of every cycle
	}
	if err := r.mkdirs(ctx, []string{StagingDir, packager.ProofCutsDir}); err != nil {
		return fmt.Errorf("publish proof: %w", err)
	}
	have := r.proofFiles(ctx)
	put := func(dst string, content []byte) error {
		if sz, ok := have[dst]; ok && sz == int64(len(content)) {
			return nil // immutable name: same size, same content
		}
		if r.e.draining() {
			return ErrStopped
		}
		tmp := StagingDir + "/proof-" + path.Base(dst)
		if err := r.t.WriteFile(ctx, tmp, bytes.NewReader(content), int64(len(content))); err != nil {
			return fmt.Errorf("publish proof: %w", err)
		}
		if err := r.t.Rename(ctx, tmp, dst); err != nil {
			return fmt.Errorf("publish proof: %w", err)
		}
		return nil
	}
	if err := put(packager.ProofManifestPath(c.m.Seq, c.manifest), c.mbytes); err != nil {
		return err
	}
	if err := put(packager.ProofSignaturePath(c.m.Seq, c.manifest), c.sig); err != nil {
		return err
	}
	if err := put(packager.ProofIndexPath, data); err != nil {
		return err
	}
	// Proof files of cuts no longer listed go, best effort.
	keep := map[string]bool{}
	for _, pc := range next.Cuts {
		keep[packager.ProofDir+"/"+pc.ManFile] = true
		keep[packager.ProofDir+"/"+pc.SigFile] = true
	}
	for p := range have {
		if !keep[p] && strings.HasPrefix(p, packager.ProofCutsDir+"/") {
			if err := r.t.Remove(ctx, p); err != nil {
				r.log.Debug("old proof file not removed", zap.String("path", p), zap.Error(err))
			}
		}
	}
	return nil
}

// readProofIndex returns the target's proof index, an empty one if it has
// none or it is unreadable (it is then rebuilt from this cut on).
func (r *targetRun) readProofIndex(ctx context.Context) *packager.ProofIndex {
	data, err := r.t.ReadFile(ctx, packager.ProofIndexPath)
	if err == nil {
		x, perr := packager.ParseProofIndex(data)
		if perr == nil {
			return x
		}
		r.log.Warn("difusor's proof index is unreadable; writing a new one", zap.Error(perr))
	} else if !errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("read proof index; writing a new one", zap.Error(err))
	}
	return &packager.ProofIndex{Format: packager.ProofIndexFormat}
}

// proofFiles lists the files below the proof's cuts directory, by path.
func (r *targetRun) proofFiles(ctx context.Context) map[string]int64 {
	have := map[string]int64{}
	err := r.t.Walk(ctx, packager.ProofCutsDir, func(fi targets.FileInfo) error {
		if !fi.Symlink {
			have[fi.Path] = fi.Size
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Debug("list proof files", zap.Error(err))
	}
	return have
}
