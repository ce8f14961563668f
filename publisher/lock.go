package publisher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prepcast/prepcast/internal/sysfs"
)

func osGetpid() int { return os.Getpid() }

// ErrPushRunning is wrapped by the error [LockPush] returns when another
// process is pushing.
var ErrPushRunning = errors.New("another prepcast process is pushing")

// PushLock is held by the one process that pushes from a state directory.
// It is an advisory lock (flock; LockFileEx on Windows) on state_dir/push.lock: the kernel releases
// it when the holder dies, so a stale lock is taken over by design.
type PushLock struct {
	f *os.File
}

// LockPush takes the push lock without waiting. If another process holds
// it, the error wraps [ErrPushRunning] and names that process.
func LockPush(stateDir string) (*PushLock, error) {
	p := filepath.Join(stateDir, "push.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("push lock: %w", err)
	}
	if err := sysfs.Lock(f, false); err != nil {
		defer f.Close()
		if errors.Is(err, sysfs.ErrLocked) {
			holder, _ := os.ReadFile(p)
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "unknown pid"
			}
			return nil, fmt.Errorf("%w (%s)", ErrPushRunning, who)
		}
		return nil, fmt.Errorf("push lock %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		host, _ := os.Hostname()
		_, _ = f.WriteAt([]byte("pid "+strconv.Itoa(os.Getpid())+" on "+host+"\n"), 0)
	}
	return &PushLock{f: f}, nil
}

// Unlock releases the lock.
func (l *PushLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close()
	l.f = nil
	return err
}
