package faultproxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// Uplink is a link that several proxies, and all their connections, share
// in the client -> server direction, like an institute's uplink that every
// difusor's traffic crosses: together they deliver at most its rate. A
// proxy's own latency and bandwidth cap still apply to each of its
// connections; data waits for the proxy's own schedule first, then for its
// turn on each uplink it crosses. Turns are given in the order writers
// ask for them, with no burst allowance. Its methods are safe for
// concurrent use.
type Uplink struct {
	rate  int64
	bytes atomic.Int64

	mu   sync.Mutex
	next time.Time // when the uplink is free again
}

// NewUplink returns an uplink that carries bytesPerSecond (at least 1).
func NewUplink(bytesPerSecond int64) *Uplink {
	return &Uplink{rate: max(bytesPerSecond, 1)}
}

// Rate is the uplink's rate in bytes per second.
func (u *Uplink) Rate() int64 { return u.rate }

// Bytes is the number of bytes delivered across the uplink so far.
func (u *Uplink) Bytes() int64 { return u.bytes.Load() }

// reserve books the uplink for n bytes and returns when their write may
// start. A gap longer than pacingSlack earns no burst.
func (u *Uplink) reserve(n int) time.Time {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	start := u.next
	if now.Sub(start) > pacingSlack {
		start = now
	}
	u.next = start.Add(time.Duration(float64(n) / float64(u.rate) * float64(time.Second)))
	return start
}

// SetUplinks makes every client -> server write of the proxy's
// connections, existing and new, cross each of uplinks in turn; none
// removes them. An Uplink used by one proxy alone caps that proxy's total
// rate over all its connections (a difusor's own downlink), unlike
// SetBandwidth, which caps each connection.
func (p *Proxy) SetUplinks(uplinks ...*Uplink) {
	p.update(func(s *settings) { s.uplinks = append([]*Uplink(nil), uplinks...) })
}

// crossUplinks waits for n bytes' turn on each uplink of s; false if the
// link was aborted meanwhile.
func (l *link) crossUplinks(s settings, n int) bool {
	for _, u := range s.uplinks {
		if wait := time.Until(u.reserve(n)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return false
			}
		}
	}
	return true
}
