package publisher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	"github.com/prepcast/prepcast/internal/background"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets"
)

// freeSpace asks the target how much room it has, while the caller goes on
// (the answer costs a round trip); the returned function waits for the
// answer: the free bytes, or -1 when the target cannot tell.
func (r *targetRun) freeSpace(ctx context.Context) func() int64 {
	sr, ok := r.t.(targets.SpaceReporter)
	if !ok {
		return func() int64 { return -1 }
	}
	return background.Go(func() int64 {
		free, known, err := sr.FreeSpace(ctx)
		if err != nil || !known {
			return -1 // cannot tell; a full disk fails the upload clearly
		}
		return free
	})
}

// checkSpace refuses a cut of need bytes the target has no room for, by
// the answer of freeSpace.
func checkSpace(answer func() int64, need int64) error {
	if need == 0 {
		return nil
	}
	free := answer()
	if free < 0 {
		return nil
	}
	const margin = 16 << 20
	if free < need+margin {
		return fmt.Errorf("%w: %d MB free, the cut needs %d MB; ask the difusor to free space under its root", ErrNoSpace, free>>20, (need+margin)>>20)
	}
	return nil
}

// objectCheck is the state of one stored object's check in this process.
type objectCheck struct {
	mu      sync.Mutex
	running chan struct{} // closed when the check in progress ends; nil if none
	ok      bool          // checked and found intact
	err     error         // checked and found corrupt
}

// beginCheck tells an upload of ent whether to hash the object as it reads
// it (hashHere: no other upload is checking it and it is not checked yet),
// or to wait for another upload's verdict (wait) before it may succeed. An
// object already found corrupt returns that error.
func (e *Engine) beginCheck(ent packager.Entry) (v *objectCheck, hashHere bool, wait <-chan struct{}, err error) {
	e.verifyMu.Lock()
	v, ok := e.verified[ent.SHA256]
	if !ok {
		v = &objectCheck{}
		e.verified[ent.SHA256] = v
	}
	e.verifyMu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.err != nil:
		return v, false, nil, v.err
	case v.ok:
		return v, false, nil, nil
	case v.running != nil:
		return v, false, v.running, nil
	}
	v.running = make(chan struct{})
	return v, true, nil, nil
}

// end records the outcome of the check beginCheck handed out: ok means
// intact, verdict set means corrupt, neither means not checked.
func (v *objectCheck) end(ok bool, verdict error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ok, v.err = ok, verdict
	close(v.running)
	v.running = nil
}

// result reports the object's state after a check ended.
func (v *objectCheck) result() (ok bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ok, v.err
}

// hashObject checks a stored object by reading it whole, and records the
// outcome.
func (e *Engine) hashObject(ent packager.Entry) error {
	f, err := e.Store.OpenObject(ent.SHA256)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%s: read stored object: %w", ent.Path, err)
	}
	if n != ent.Size || hex.EncodeToString(h.Sum(nil)) != ent.SHA256 {
		return e.corrupt(ent)
	}
	e.verifyMu.Lock()
	v := e.verified[ent.SHA256]
	e.verifyMu.Unlock()
	if v != nil {
		v.mu.Lock()
		if v.running == nil {
			v.ok = true
		}
		v.mu.Unlock()
	}
	return nil
}

// corrupt is the error for a stored object whose content does not match
// its name.
func (e *Engine) corrupt(ent packager.Entry) error {
	return fmt.Errorf("%s: %w; not pushed (run prepcast cut --rehash to store it again)", ent.Path, packager.ErrCorruptObject)
}
