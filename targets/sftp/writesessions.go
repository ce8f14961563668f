package sftp

import "sync"

// extraWriteSessions is how many pipelined sessions beside the first one
// carry small files (writeSmall). OpenSSH grants each session channel a
// window of 2 MB, so one session carries at most 2 MB per round trip
// (about 16 MB/s at 107 ms): a distant difusor left alone at the end of a
// push could not take the uplink the others freed. Three sessions carry
// three times that. They open in the background at the first small write,
// and a server that refuses them (OpenSSH's MaxSessions) leaves the writes
// on the first session.
const extraWriteSessions = 2

// writeSessions are a connection's extra sessions for small writes.
type writeSessions struct {
	once  sync.Once
	mu    sync.Mutex
	extra []*rawSession
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

// writeSession returns, among first (the connection's pipelined session)
// and the extra write sessions that are open and working, the one with the
// fewest bytes being written.
func (c *conn) writeSession(first *rawSession) *rawSession {
	best := first
	c.wr.mu.Lock()
	defer c.wr.mu.Unlock()
	for _, s := range c.wr.extra {
		if s.failed() == nil && s.writing.Load() < best.writing.Load() {
			best = s
		}
	}
	return best
}
