package publisher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// Difusor is the machinery of a push (staging, the commit with the
// pointers last, the ack, retiring) for a root whose content the caller
// supplies and checks itself: what "prepcast apply" runs on a difusor's own
// webroot (package apply). It never reads the local store: a staged file
// that is gone at commit time is an error, not a reason to upload it again.
type Difusor struct {
	r    *targetRun
	seen map[string]int // staging names handed out, by content hash
}

// Staged is one file of a package written to its staging name.
type Staged struct{ s staged }

// Entry is the manifest entry the file was staged for.
func (s Staged) Entry() packager.Entry { return s.s.e }

// NewDifusor returns the machinery for root t, renaming filesInFlight files
// at once (0 = the push default), keeping a replaced cut's proof listed
// for retention (0 = the push default), as the root keeps its files.
func NewDifusor(t targets.Target, filesInFlight int, retention time.Duration, log *zap.Logger) *Difusor {
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{Log: log, FilesInFlight: min(max(filesInFlight, 0), 256), RetentionWindow: retention}
	e.init()
	r := &targetRun{e: e, t: t, log: log, staged: map[string]bool{}, synced: map[string]bool{}, dirs: map[string]bool{},
		prog: func(string, int64, int64, int, int) {}, start: time.Now()}
	return &Difusor{r: r, seen: map[string]int{}}
}

// PrepareStaging creates the staging directory (see [StagingDir]).
func (d *Difusor) PrepareStaging(ctx context.Context) error { return d.r.prepareStaging(ctx) }

// Stage writes exactly e.Size bytes of r to a staging name for e, without
// flushing it to disk yet ([Difusor.Commit] does). The caller checks the
// content against e.SHA256 and must not commit a file that failed.
func (d *Difusor) Stage(ctx context.Context, e packager.Entry, r io.Reader) (Staged, error) {
	s := stageAs(d.seen, e)
	var err error
	if ds, ok := d.r.t.(targets.DeferredSyncer); ok {
		err = ds.WriteFileNoSync(ctx, s.name, r, e.Size)
	} else {
		err = d.r.t.WriteFile(ctx, s.name, r, e.Size)
	}
	if err != nil {
		return Staged{}, fmt.Errorf("stage %s: %w", e.Path, err)
	}
	return Staged{s}, nil
}

// PublishProof places the public proof of cut m (its canonical manifest
// mb, signed by sig) in the root before the cut is committed, as a push
// does (see [packager.ProofDir]): the index lists m, the cut the root
// serves now (served, 0 for none) and the cuts replaced less than the
// retention ago. The caller has verified sig over mb.
func (d *Difusor) PublishProof(ctx context.Context, m *packager.Manifest, mb, sig []byte, served int64) error {
	c := &cutRef{m: m, mbytes: mb, sig: sig, manifest: packager.Hash(mb)}
	return d.r.publishProof(ctx, c, served, nil)
}

// ErrStagedVanished is wrapped by the error [Difusor.Commit] returns when a
// staged file is gone before its rename.
var ErrStagedVanished = errors.New("a staged file vanished before its rename")

// Commit makes the staged files durable, checks that every one of them is
// still in the staging directory with its size, and renames them into place:
// every non-pointer file (several at once), then the pointers one by one in
// m's order. When a staged file is missing before any rename, nothing is
// renamed; when one vanishes during the renames (something else cleaned the
// staging directory), Commit stops before the pointers. Either error wraps
// [ErrStagedVanished] and names the file.
func (d *Difusor) Commit(ctx context.Context, files []Staged, m *packager.Manifest) error {
	r := d.r
	plan := make([]staged, len(files))
	for i, f := range files {
		plan[i] = f.s
	}
	if err := d.checkStaged(ctx, plan); err != nil {
		return err
	}
	if err := r.flushStaged(ctx, plan); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if cerr := d.checkStaged(ctx, plan); cerr != nil {
				return cerr
			}
		}
		return err
	}
	rest, ptrs := splitPointers(plan, m)
	if err := r.mkdirs(ctx, destDirs(plan)); err != nil {
		return err
	}
	rename := func(ctx context.Context, s staged) error {
		err := r.t.Rename(ctx, s.name, s.e.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("commit %s: %w (%s); the pointers were not switched", s.e.Path, ErrStagedVanished, s.name)
		}
		if err != nil {
			return fmt.Errorf("commit %s: %w", s.e.Path, err)
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(renamesInFlight)
	for _, s := range rest {
		g.Go(func() error { return rename(gctx, s) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, s := range ptrs {
		if err := rename(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// checkStaged lists the staging directory and fails, naming the first
// missing file, unless every file of plan is there with its size.
func (d *Difusor) checkStaged(ctx context.Context, plan []staged) error {
	have := make(map[string]int64, len(plan))
	err := d.r.t.Walk(ctx, StagingDir, func(fi targets.FileInfo) error {
		if !fi.Symlink {
			have[fi.Path] = fi.Size
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list staging directory: %w", err)
	}
	for _, s := range plan {
		if sz, ok := have[s.name]; !ok || sz != s.e.Size {
			return fmt.Errorf("commit %s: %w (%s); nothing was renamed", s.e.Path, ErrStagedVanished, s.name)
		}
	}
	return nil
}

// WriteAck writes the ack atomically (staged, then renamed over the old
// one).
func (d *Difusor) WriteAck(ctx context.Context, a *Ack) error { return d.r.writeAck(ctx, a) }

// DeleteRetired deletes the due files, then the directories they leave
// empty that hold no file of m or of keep. A file already gone is fine.
func (d *Difusor) DeleteRetired(ctx context.Context, due, keep []Retired, m *packager.Manifest) error {
	return d.r.deleteRetired(ctx, due, keep, m)
}

// CleanStaging removes the staging directory and whatever it holds.
func (d *Difusor) CleanStaging(ctx context.Context) { d.r.cleanStaging(ctx) }
