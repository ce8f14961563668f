package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// proofTmpPrefix starts the staging names of the proof's files.
const proofTmpPrefix = "proof-"

// publishProof places cut c's public proof on the target (see
// [packager.ProofDir]): the canonical manifest and its signature under
// names of their own, then the index listing c, replaced atomically. It runs
// before any file of c is committed, so whoever finds c's pointer finds c's
// manifest listed. A cut is listed until the retention window after a newer
// cut replaced it has passed (as its files are kept); the cut the target
// acknowledges (acked, 0 for none) is never dropped, since it may still be
// served if this push fails. Proof files no longer listed are deleted, after
// the index that stopped listing them is in place.
//
// Requests that do not depend on each other go together, so that a new
// cut's proof costs about as many round trips as one file written and
// renamed, not one per step: the index is read while the proof directory
// is made; the manifest, the signature and the new index are written at
// once; the index is renamed into place once the other two are written.
// Listing the directory for the files to delete comes after.
//
// pre, when not nil, holds those reads, started with the push attempt.
func (r *targetRun) publishProof(ctx context.Context, c *cutRef, acked int64, pre *proofReads) error {
	prune, err := r.placeProof(ctx, c, acked, pre)
	if err != nil {
		return err
	}
	prune()
	return nil
}

// placeProof is publishProof up to the new index in place; the returned
// function then deletes the proof files no longer listed, best effort.
func (r *targetRun) placeProof(ctx context.Context, c *cutRef, acked int64, pre *proofReads) (prune func(), err error) {
	prune = func() {}
	now := r.e.now().UTC().Truncate(time.Second)
	if pre == nil {
		// A target that already holds c most often has its proof current:
		// the index is all there is to read.
		pre = r.readProof(ctx, acked != c.m.Seq)
	}
	old := pre.index()
	next, listed := nextProofIndex(old, c, acked, now, r.e.RetentionWindow)
	data := next.Encode()
	if listed && bytes.Equal(data, old.Encode()) {
		return prune, nil // nothing new: this is the cheap path of every cycle
	}
	// The new index drops or lists cuts: the proof files are listed
	// meanwhile, for prune (and for a listed cut's files, below).
	pre.startListing()
	if err := pre.dirs(); err != nil {
		return prune, fmt.Errorf("publish proof: %w", err)
	}
	tmp := func(dst string) string { return StagingDir + "/" + proofTmpPrefix + path.Base(dst) }
	// Writes take the target's write slots, as uploads do, and none
	// starts once the engine drains.
	write := func(ctx context.Context, name string, content []byte) error {
		release, err := r.writeSlot(ctx)
		if err != nil {
			return err
		}
		defer release()
		if r.e.draining() {
			return ErrStopped
		}
		if err := r.t.WriteFile(ctx, name, bytes.NewReader(content), int64(len(content))); err != nil {
			return fmt.Errorf("publish proof: %w", err)
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return write(gctx, tmp(packager.ProofIndexPath), data) })
	// c's manifest and signature are written under their own names
	// directly: no index lists them before the one written now is renamed
	// into place, after them (an index lists c only once c's files are
	// whole), and their names say what they hold. An index that lists c
	// already had them written; only one found missing is written again.
	for _, f := range []struct {
		dst     string
		content []byte
	}{{packager.ProofManifestPath(c.m.Seq, c.manifest), c.mbytes}, {packager.ProofSignaturePath(c.m.Seq, c.manifest), c.sig}} {
		if listed {
			if sz, ok := pre.have()[f.dst]; ok && sz == int64(len(f.content)) {
				continue
			}
		}
		g.Go(func() error { return write(gctx, f.dst, f.content) })
	}
	if err := g.Wait(); err != nil {
		return prune, err
	}
	if err := r.t.Rename(ctx, tmp(packager.ProofIndexPath), packager.ProofIndexPath); err != nil {
		return prune, fmt.Errorf("publish proof: %w", err)
	}
	// Proof files of cuts no longer listed go, best effort.
	keep := map[string]bool{}
	for _, pc := range next.Cuts {
		keep[packager.ProofDir+"/"+pc.ManFile] = true
		keep[packager.ProofDir+"/"+pc.SigFile] = true
	}
	return func() {
		var rm errgroup.Group
		rm.SetLimit(r.e.filesInFlight())
		for p := range pre.have() {
			if !keep[p] && strings.HasPrefix(p, packager.ProofCutsDir+"/") {
				rm.Go(func() error {
					if err := r.t.Remove(ctx, p); err != nil {
						r.log.Debug("old proof file not removed", zap.String("path", p), zap.Error(err))
					}
					return nil
				})
			}
		}
		_ = rm.Wait()
	}, nil
}

// nextProofIndex returns the index that lists cut c after old, and whether
// old listed c already. A cut old lists past c, or at c's number with
// another manifest, is dropped (it never was, as far as this store knows);
// the cuts c replaces are marked replaced at now, and dropped once the
// retention window has passed, except the acknowledged one.
func nextProofIndex(old *packager.ProofIndex, c *cutRef, acked int64, now time.Time, retention time.Duration) (*packager.ProofIndex, bool) {
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
			continue
		case pc.Seq < c.m.Seq && pc.Replaced == nil:
			t := now
			pc.Replaced = &t
		}
		if pc.Seq != c.m.Seq && pc.Seq != acked && pc.Replaced != nil && now.Sub(*pc.Replaced) >= retention {
			continue // retired with its files
		}
		next.Cuts = append(next.Cuts, pc)
	}
	if !listed {
		next.Cuts = append(next.Cuts, packager.NewProofCut(c.m, c.mbytes, now))
	}
	return next, listed
}

// proofReads are what publishProof reads before it writes (readProof).
type proofReads struct {
	index func() *packager.ProofIndex
	dirs  func() error

	list     func() map[string]int64 // lists the proof files
	listOnce sync.Once
	listing  func() map[string]int64 // the listing, once started
	started  atomic.Bool
}

// startListing starts listing the proof files in the background, once.
func (p *proofReads) startListing() {
	p.listOnce.Do(func() {
		p.listing = background.Go(p.list)
		p.started.Store(true)
	})
}

// have returns the proof files by path, listing them if not yet started.
func (p *proofReads) have() map[string]int64 {
	p.startListing()
	return p.listing()
}

// wait waits for the reads started in the background: the index, the
// directories (readProof with dirs), and the listing if it was started.
func (p *proofReads) wait() {
	_, _ = p.index(), p.dirs()
	if p.started.Load() {
		_ = p.have()
	}
}

// readProof starts reading the proof index in the background, and making
// the proof's directories too when dirs; the proof files are listed when
// asked for (only an index that changes needs them: to delete what it no
// longer lists, or to rewrite a listed file found missing), and the
// directories made then if not already.
func (r *targetRun) readProof(ctx context.Context, dirs bool) *proofReads {
	mkdirs := func() error { return r.mkdirs(ctx, []string{StagingDir, packager.ProofCutsDir}) }
	p := &proofReads{
		index: background.Go(func() *packager.ProofIndex { return r.readProofIndex(ctx) }),
		dirs:  sync.OnceValue(mkdirs),
		list:  func() map[string]int64 { return r.proofFiles(ctx) },
	}
	if dirs {
		p.dirs = background.Go(mkdirs)
	}
	return p
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
