package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/sysfs"
)

// LockPath is the lock one "prepcast apply" holds on a root at a time.
const LockPath = safepath.Reserved + "/apply.lock"

// LockWait bounds the wait for another apply on the same root.
const LockWait = 2 * time.Minute

// LockRoot takes ROOT/.prepcast/apply.lock (an advisory flock the kernel
// releases if the holder dies), waiting up to wait for another apply to
// finish. The lock and its directory are opened inside the root without
// following a symbolic link: a link planted there is refused, never
// followed to a file elsewhere.
func LockRoot(ctx context.Context, root string, wait time.Duration) (unlock func(), err error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("apply: open root: %w (it must be an existing directory)", err)
	}
	defer r.Close()
	if fi, err := r.Lstat(safepath.Reserved); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("apply: %s is not a directory (%v); remove it", filepath.Join(root, safepath.Reserved), fi.Mode().Type())
	}
	if err := r.Mkdir(safepath.Reserved, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("apply: %w", err)
	}
	name := filepath.Join(root, LockPath)
	if fi, err := r.Lstat(LockPath); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("apply: %s is a symbolic link; prepcast never follows it: remove it", name)
	}
	f, err := r.OpenFile(LockPath, os.O_RDWR|os.O_CREATE|sysfs.ONoFollow, 0o600)
	if err != nil {
		if sysfs.IsLinkRefused(err) || strings.Contains(err.Error(), "escapes") {
			return nil, fmt.Errorf("apply: %s is a symbolic link; prepcast never follows it: remove it", name)
		}
		return nil, fmt.Errorf("apply: lock: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("apply: %s is not a regular file; remove it", name)
	}
	deadline := time.Now().Add(wait)
	for {
		err := sysfs.Lock(f, false)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, sysfs.ErrLocked) {
			f.Close()
			return nil, fmt.Errorf("apply: lock %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("apply: another prepcast apply has held %s for %v; is a push stuck? (it is released when that process ends)", name, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
