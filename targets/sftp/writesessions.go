package sftp

import (
	"context"
	"sync"
)

// extraWriteSessions is how many pipelined sessions beside the first one
// carry small files (writeSmall). One session carries at most
// sessionWriteMax per round trip (its 2 MB window would allow more, at a
// cost to a busy server: see sessionWriteMax), about 10 MB/s at 107 ms: a
// distant difusor left alone at the end of a push could not take the
// uplink the others freed. Three sessions carry three times that. They
// open in the background at the first small write, and a server that
// refuses them (OpenSSH's MaxSessions) leaves the writes on the first
// session.
const extraWriteSessions = 2

// writeSessions are a connection's extra sessions for small writes.
type writeSessions struct {
	once  sync.Once
	mu    sync.Mutex
	extra []*rawSession
	freed chan struct{} // closed when bytes are released; nil if no one waits
}

// warmWriters opens the extra write sessions in the background, once per
// connection; those the server refuses are not asked for again.
func (c *conn) warmWriters() {
	c.wr.once.Do(func() {
		go func() {
			opened := make([]*rawSession, extraWriteSessions)
			var wg sync.WaitGroup
			for i := range opened {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if s, err := openRawSession(c.ssh); err == nil {
						opened[i] = s
					}
				}()
			}
			wg.Wait()
			c.wr.mu.Lock()
			defer c.wr.mu.Unlock()
			for _, s := range opened {
				if s != nil {
					c.wr.extra = append(c.wr.extra, s)
				}
			}
		}()
	})
}

// sessionWriteMax is how many bytes of small files one session has in
// flight at most (a larger file goes alone). With a session's full 2 MB
// window in flight, a difusor whose SFTP server falls behind (a busy
// machine) holds the backlog in sshd's channel buffers, and OpenSSH's
// sshd then spends most of its CPU copying them (make bench-night, 10
// difusores on two cores: 15.6 s of the difusores' CPU for a peak cut
// without the bound, 3.7 s with 1 MiB). Three sessions of 1 MiB still
// carry 3 MiB per round trip, 20 MB/s at 150 ms.
const sessionWriteMax = 1 << 20

// reserveWrite returns, among first (the connection's pipelined session)
// and the extra write sessions that are open and working, the one with
// the fewest bytes being written, once it has room for n more (see
// sessionWriteMax), with n reserved on it; release gives them back. It
// waits for room until ctx ends, calling progress whenever bytes ahead of
// it were written (the wait is not a stall).
func (c *conn) reserveWrite(ctx context.Context, first *rawSession, n int, progress func()) (s *rawSession, release func(), err error) {
	for {
		c.wr.mu.Lock()
		best := first
		for _, x := range c.wr.extra {
			if x.failed() == nil && x.writing.Load() < best.writing.Load() {
				best = x
			}
		}
		if w := best.writing.Load(); w == 0 || w+int64(n) <= sessionWriteMax {
			best.writing.Add(int64(n))
			c.wr.mu.Unlock()
			return best, func() {
				c.wr.mu.Lock()
				best.writing.Add(-int64(n))
				best.wrote.Add(int64(n))
				if c.wr.freed != nil {
					close(c.wr.freed)
					c.wr.freed = nil
				}
				c.wr.mu.Unlock()
			}, nil
		}
		if c.wr.freed == nil {
			c.wr.freed = make(chan struct{})
		}
		freed := c.wr.freed
		c.wr.mu.Unlock()
		select {
		case <-freed:
			progress()
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}
