package publisher

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/targets"
)

// Staging hygiene and resume.
//
// A push that fails or is killed leaves staged files behind. They are of
// two kinds:
//
//   - resumable files (at least ResumeMinSize bytes) are uploaded to
//     "<name>.part" and renamed to "<name>" (a name ending in wholeSuffix)
//     only once every byte is written and the object's hash checked. A
//     file under such a name with the size the manifest gives is whole,
//     whoever wrote it: a later push (of any process) renames it into place
//     instead of sending it again.
//   - everything else (small files, ".part" files) may be partial: it is
//     never trusted, only overwritten.
//
// Before staging, files that the current plan does not use and that are
// older than StaleStaging are removed: a push in progress elsewhere (a
// second publisher, a difusor's "prepcast apply") writes files younger
// than that, and the leftovers of failed pushes cannot pile up beyond what
// StaleStaging of cuts changed.

// ResumeMinSize is the smallest file a push resumes across processes;
// smaller files are sent again (cheaper than the rename that marks a file
// whole).
const ResumeMinSize = 256 << 10

// wholeSuffix ends the staging name of a resumable file.
const wholeSuffix = ".whole"

// partSuffix ends the name a resumable file is written under.
const partSuffix = ".part"

// DefaultStaleStaging is how old a staging file must be before a push that
// does not use it removes it.
const DefaultStaleStaging = time.Hour

// resumable reports whether s is staged whole-then-renamed.
func resumable(s staged) bool { return strings.HasSuffix(s.name, wholeSuffix) }

// markResumable gives the large files of plan their resumable names.
func markResumable(plan []staged) {
	for i := range plan {
		if plan[i].e.Size >= ResumeMinSize {
			plan[i].name += wholeSuffix
		}
	}
}

// writeName is the name an upload of s writes to.
func writeName(s staged) string {
	if resumable(s) {
		return s.name + partSuffix
	}
	return s.name
}

// finishUpload renames a resumable file to its whole name once its upload
// and its object's check succeeded.
func (r *targetRun) finishUpload(ctx context.Context, s staged) error {
	if !resumable(s) {
		return nil
	}
	return r.t.Rename(ctx, writeName(s), s.name)
}

// stagingList is the staging directory's files, or why they could not be
// listed.
type stagingList struct {
	files []targets.FileInfo
	err   error
}

// listStaging lists the files of the staging directory; a missing
// directory holds none.
func (r *targetRun) listStaging(ctx context.Context) stagingList {
	var l stagingList
	l.err = r.t.Walk(ctx, StagingDir, func(fi targets.FileInfo) error {
		if path.Dir(fi.Path) == StagingDir {
			l.files = append(l.files, fi)
		}
		return nil
	})
	if errors.Is(l.err, fs.ErrNotExist) {
		l.err = nil
	}
	return l
}

// sweepStaging goes through the staging directory's listing (from
// listStaging, listed now when list is nil): whole files of plan with the
// right size count as staged (they are not sent again), and files plan
// does not use that are older than the engine's StaleStaging are removed.
// Listing or removal failures are logged and do not stop the push. It
// returns how many files a successful commit of plan leaves in the
// directory (files of others, partial uploads of files found whole), or
// -1 when it cannot tell.
func (r *targetRun) sweepStaging(ctx context.Context, plan []staged, list func() stagingList) int {
	inPlan := make(map[string]staged, len(plan))
	for _, s := range plan {
		inPlan[s.name] = s
		if resumable(s) {
			inPlan[writeName(s)] = s
		}
	}
	cutoff := r.e.now().Add(-r.e.staleStaging())
	var stale, others []string
	resumed, resumedBytes := 0, int64(0)
	var l stagingList
	if list != nil {
		l = list()
	} else {
		l = r.listStaging(ctx)
	}
	if l.err != nil {
		r.log.Warn("list staging directory (stale files stay until the next push)", zap.Error(l.err))
		return -1
	}
	for _, fi := range l.files {
		s, used := inPlan[fi.Path]
		own := path.Base(fi.Path) == "ack.json" || strings.HasPrefix(path.Base(fi.Path), proofTmpPrefix)
		switch {
		case used && fi.Path == s.name && resumable(s) && !fi.Symlink && fi.Size == s.e.Size:
			r.mu.Lock()
			if !r.staged[s.name] {
				r.staged[s.name] = true
				resumed++
				resumedBytes += s.e.Size
			}
			r.mu.Unlock()
		case used && fi.Path != s.name:
			// The partial upload of a resumable file: overwritten by
			// this push, unless the whole file is already there.
			others = append(others, fi.Path)
		case used || own:
			// Overwritten and renamed into place by this push (the ack's
			// and the proof's own staging names are rewritten by each
			// push, the proof's while the files stage).
		case !fi.ModTime.IsZero() && fi.ModTime.Before(cutoff):
			// (A server that reports no times never gets files removed.)
			stale = append(stale, fi.Path)
		default:
			others = append(others, fi.Path)
		}
	}
	// What stays in the directory once every file of plan is renamed into
	// place: files of others, and partial uploads of files found whole.
	left := 0
	r.mu.Lock()
	for _, p := range others {
		if s, used := inPlan[p]; !used || r.staged[s.name] {
			left++
		}
	}
	r.mu.Unlock()
	if resumed > 0 {
		r.log.Info("resuming staged files a previous push wrote whole", zap.Int("files", resumed), zap.Int64("bytes", resumedBytes))
	}
	if len(stale) == 0 {
		return left
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.filesInFlight())
	for _, p := range stale {
		g.Go(func() error { return r.t.Remove(gctx, p) })
	}
	if err := g.Wait(); err != nil {
		r.log.Warn("remove stale staging files", zap.Int("files", len(stale)), zap.Error(err))
		return -1
	}
	r.log.Info("removed stale staging files of earlier pushes", zap.Int("files", len(stale)))
	return left
}

func (e *Engine) staleStaging() time.Duration {
	if e.StaleStaging > 0 {
		return e.StaleStaging
	}
	return DefaultStaleStaging
}
