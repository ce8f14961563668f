package publisher

import (
	"context"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// NewLimiter returns a token bucket for bytesPerSec (nil for 0 = unlimited),
// with a burst of a tenth of a second's worth (at least 64 KiB).
func NewLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := max(bytesPerSec/10, 64<<10)
	return rate.NewLimiter(rate.Limit(bytesPerSec), int(burst))
}

// meteredFile reads a stored object for upload: it waits on the limiters
// before handing out bytes and counts them. It offers ReadAt and Size so
// the SFTP client can write several parts of a large file at once.
type meteredFile struct {
	ctx      context.Context
	f        io.ReaderAt
	size     int64
	off      int64
	limiters []*rate.Limiter
	sent     *atomic.Int64
	// hash, when set, takes the bytes handed out while they are read in
	// order from the start; hashed counts them.
	hashMu sync.Mutex
	hash   hash.Hash
	hashed int64
	gap    bool // read out of order: hash is incomplete
}

// sum returns the SHA-256 of the whole object and true, if every byte was
// read in order exactly once.
func (m *meteredFile) sum() ([]byte, bool) {
	m.hashMu.Lock()
	defer m.hashMu.Unlock()
	if m.hash == nil || m.gap || m.hashed != m.size {
		return nil, false
	}
	return m.hash.Sum(nil), true
}

func (m *meteredFile) wait(n int) error {
	for _, l := range m.limiters {
		if l == nil {
			continue
		}
		for left := n; left > 0; {
			c := min(left, l.Burst())
			if err := l.WaitN(m.ctx, c); err != nil {
				return err
			}
			left -= c
		}
	}
	return nil
}

func (m *meteredFile) Read(p []byte) (int, error) {
	if m.off >= m.size {
		return 0, io.EOF
	}
	n, err := m.ReadAt(p, m.off)
	m.off += int64(n)
	if err == io.EOF && m.off >= m.size {
		err = nil
		if n == 0 {
			err = io.EOF
		}
	}
	return n, err
}

func (m *meteredFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= m.size {
		return 0, io.EOF
	}
	if rem := m.size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	if err := m.wait(len(p)); err != nil {
		return 0, err
	}
	n, err := m.f.ReadAt(p, off)
	m.sent.Add(int64(n))
	if m.hash != nil && n > 0 {
		m.hashMu.Lock()
		defer m.hashMu.Unlock()
		if off == m.hashed && !m.gap {
			m.hash.Write(p[:n])
			m.hashed += int64(n)
		} else {
			m.gap = true
		}
	}
	return n, err
}

// Size lets the SFTP client see the length and write concurrently.
func (m *meteredFile) Size() int64 { return m.size }
