package targets

import (
	"context"
	"errors"
	"io"
)

// RangeOp is one step of rebuilding a file on a target: a range copied
// from another file the target holds (Copy), or literal bytes sent over the
// wire. Ops cover the new file in order: op i starts at Dst where op i-1
// ends.
type RangeOp struct {
	Copy bool
	Src  int64 // offset in the source file (Copy only)
	Dst  int64 // offset in the new file; literal bytes are read at Dst
	Len  int64
}

// RangePlan rebuilds a file of Size bytes on a target from a source file
// the target already holds.
type RangePlan struct {
	// SrcSize is the size the source file must have.
	SrcSize int64
	// Probe, when >= 0, is an offset at which the source file must hold
	// ProbeBytes: it tells the expected version of the source from another
	// (such as the new version, already renamed into place by an
	// interrupted commit).
	Probe      int64
	ProbeBytes []byte
	// SrcOlderThan, when set, names a file that src must not have been
	// modified after (by the server's clock, in whole seconds): the
	// target's acknowledgement, written after every file of the cut it
	// acknowledges. With [RangeCopier.WaitPast] called before anything
	// else is staged, a src renamed into place by a later, interrupted
	// commit (or edited since) is newer and is not copied from.
	SrcOlderThan string
	Size         int64
	Ops          []RangeOp
	// Flush asks for the staged file to be flushed to disk, where the
	// server can, before it is closed; otherwise the caller flushes it
	// ([DeferredSyncer]).
	Flush bool
}

// RangeCopier is implemented by targets whose server can copy byte ranges
// from one file into another without the bytes crossing the network
// (OpenSSH's copy-data SFTP extension).
type RangeCopier interface {
	// CanCopyRanges reports whether the server copies ranges, connecting
	// if needed. The answer holds for the connection it was asked on.
	CanCopyRanges(ctx context.Context) (bool, error)
	// WriteFileRanges creates or truncates path and fills it by plan:
	// ranges copied from src on the server, literal ranges read from lit at
	// their Dst offset. src is only read. Before copying it checks that
	// src has plan.SrcSize bytes, plan.ProbeBytes at plan.Probe and is
	// older than plan.SrcOlderThan (otherwise the error wraps
	// [ErrSourceChanged]); afterwards, that
	// path holds plan.Size bytes. It does not flush path to disk (see
	// [DeferredSyncer]). lit is not used after WriteFileRanges returns.
	WriteFileRanges(ctx context.Context, path, src string, plan *RangePlan, lit io.ReaderAt) error
	// WaitPast returns once a file the server writes gets a modification
	// time (in whole seconds) later than path's, writing to the scratch
	// file marker to read the server's clock; it waits at most a few
	// seconds. Called before a push stages anything, it makes every file
	// staged by that push newer than path (the acknowledgement).
	WaitPast(ctx context.Context, path, marker string) error
}

// ErrSourceChanged means the file a range plan copies from is not the
// version the plan was made for.
var ErrSourceChanged = errors.New("source file is not the expected version")
