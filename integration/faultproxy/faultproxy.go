// Package faultproxy is a fault-injecting TCP proxy for prepcast's
// integration tests. A [Proxy] listens on 127.0.0.1 and forwards every
// connection it accepts to one target on 127.0.0.1 (typically an sshd that
// serves a difusor's webroot), while the test makes the link behave like a
// bad WAN or a failing peer: latency, a bandwidth cap, connection resets
// after a number of bytes or on demand, a hung peer (blackhole) and a slow
// SSH banner. Several proxies may share an [Uplink], one link whose rate
// all their client -> server traffic divides.
//
// Each direction of a connection is a pipeline, like a real link: a reader
// sends what it receives through the link's bottleneck (the bandwidth cap
// and the uplinks, paced; while they are busy the reader stops reading, and
// the sender's own socket buffers are the queue), timestamps each piece as
// it leaves and puts it in flight; a writer delivers each piece at its
// timestamp plus the latency. What is in flight is bounded only by the
// rate times the latency (and [MaxInFlight]), as on a real path, so a
// connection's throughput is limited by its bottleneck and its own windows,
// not by the latency. Data order is always preserved, and a half-close
// (FIN) travels behind the data like any other chunk. Faults may be
// changed at any time from any goroutine; each setter says which data and
// connections it affects.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	chunkSize = 32 << 10
	queueLen  = 2048
	// MaxInFlight bounds the data the proxy holds per direction of a
	// connection (sent through its bottleneck, not yet delivered): more
	// than any rate the tests use times any latency they set.
	MaxInFlight = chunkSize * queueLen

	dialTimeout = 5 * time.Second
	// pacingSlack is how late a paced write may start and still count from
	// the previous write's schedule rather than from now, so that timer
	// lateness does not lower the rate; longer gaps earn no burst.
	pacingSlack = 10 * time.Millisecond
)

// Stats counts what a Proxy has done since Start.
type Stats struct {
	Accepted  int64 // connections accepted
	Active    int   // connections open now (target dialled, not yet closed)
	BytesUp   int64 // bytes delivered client -> server
	BytesDown int64 // bytes delivered server -> client
	Resets    int64 // connections reset by ResetAfter or DropAll
}

// settings are the faults in force.
type settings struct {
	latency    time.Duration
	bandwidth  int64
	resetAfter int64
	blackhole  bool
	stall      time.Duration
	uplinks    []*Uplink // shared client -> server links (SetUplinks)
}

// Proxy forwards TCP connections from its 127.0.0.1 address to a target,
// injecting the faults set on it. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close: aborts dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu      sync.Mutex
	set     settings
	changed chan struct{} // closed and replaced at every change of set
	links   map[*link]struct{}
	closed  bool

	accepted, up, down, resets atomic.Int64
}

// Start listens on 127.0.0.1:0 and forwards every accepted connection to
// target, a "127.0.0.1:port" address, with no fault until one is set. A
// connection whose target cannot be dialled is reset. The caller must call
// [Proxy.Close].
func Start(target string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("start proxy to %q: %w", target, err)
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("start proxy to %q: the target must be a 127.0.0.1 address", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy to %q: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, changed: make(chan struct{}), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the "127.0.0.1:port" address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening, resets every connection and returns once all of
// the proxy's goroutines have ended. Calling it again does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	links := p.snapshotLinks()
	p.mu.Unlock()
	err := p.ln.Close()
	p.cancel()
	for _, l := range links {
		l.abort()
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("close proxy: %w", err)
	}
	return nil
}

// SetLatency delays every chunk, in each direction, by oneWay after it left
// the link's bottleneck (25ms one way is a 50ms round trip). It applies to every
// chunk not yet delivered, on existing and new connections.
func (p *Proxy) SetLatency(oneWay time.Duration) {
	p.update(func(s *settings) { s.latency = max(oneWay, 0) })
}

// SetBandwidth caps each direction of each connection to bytesPerSec by
// pacing writes, with no burst allowance; 0 (or less) removes the cap. It
// applies at once to existing and new connections.
func (p *Proxy) SetBandwidth(bytesPerSec int64) {
	p.update(func(s *settings) { s.bandwidth = max(bytesPerSec, 0) })
}

// ResetAfter makes every connection, existing or new, deliver at most n
// bytes client -> server in its lifetime: the write that delivers the n-th
// byte is followed at once by a reset (RST) of both sides. A connection
// that already carried n bytes is reset when it next has client -> server
// data to deliver. 0 (or less) disables it.
func (p *Proxy) ResetAfter(n int64) {
	p.update(func(s *settings) { s.resetAfter = max(n, 0) })
}

// Blackhole, while on, makes the proxy a hung peer: it keeps accepting
// connections and dialling the target, but delivers nothing in either
// direction, not even a close, so ResetAfter cannot fire either. Data in
// flight and the chunk being read are held, and the proxy stops reading.
// Turning it off resumes delivery on every connection, held data first.
// Meanwhile only DropAll, Close or a peer's reset end a connection.
func (p *Proxy) Blackhole(on bool) {
	p.update(func(s *settings) { s.blackhole = on })
}

// StallHandshake makes connections accepted from now on hold the first
// bytes the server sends (an SSH server's banner) for d, plus the latency,
// before delivering them; 0 stops stalling new connections.
func (p *Proxy) StallHandshake(d time.Duration) {
	p.update(func(s *settings) { s.stall = max(d, 0) })
}

// DropAll resets (RST) both sides of every current connection now.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	links := p.snapshotLinks()
	p.mu.Unlock()
	for _, l := range links {
		l.reset()
	}
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Active: active, BytesUp: p.up.Load(), BytesDown: p.down.Load(), Resets: p.resets.Load()}
}

func (p *Proxy) update(f func(*settings)) {
	p.mu.Lock()
	f(&p.set)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// current returns the settings in force and a channel closed when they next change.
func (p *Proxy) current() (settings, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.set, p.changed
}

// snapshotLinks returns the open connections; p.mu must be held.
func (p *Proxy) snapshotLinks() []*link {
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
	}
	return out
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c.(*net.TCPConn))
	}
}

// serve dials the target for client and forwards until both directions end
// or the connection is aborted.
func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	sc, err := (&net.Dialer{Timeout: dialTimeout}).DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		_ = client.SetLinger(0)
		_ = client.Close()
		return
	}
	l := &link{p: p, client: client, server: sc.(*net.TCPConn), done: make(chan struct{})}
	p.mu.Lock()
	l.stall = p.set.stall
	if p.closed {
		p.mu.Unlock()
		l.abort()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	l.run()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// link is one proxied connection.
type link struct {
	p              *Proxy
	client, server *net.TCPConn
	stall          time.Duration // hold on the first server -> client chunk
	up             atomic.Int64  // bytes delivered client -> server
	once           sync.Once
	done           chan struct{} // closed by abort
}

// half is one direction of a link.
type half struct {
	src, dst *net.TCPConn
	q        chan chunk
	up       bool // client -> server
}

// chunk is data read at a time, or the end of the stream.
type chunk struct {
	at   time.Time
	data []byte
	eof  bool
}

func (l *link) run() {
	up := &half{src: l.client, dst: l.server, q: make(chan chunk, queueLen), up: true}
	down := &half{src: l.server, dst: l.client, q: make(chan chunk, queueLen)}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); l.read(up) }()
	go func() { defer wg.Done(); l.read(down) }()
	go func() { defer wg.Done(); l.write(up) }()
	l.write(down)
	wg.Wait()
	// Both directions ended (or the link was aborted, and these are no-ops).
	_ = l.client.Close()
	_ = l.server.Close()
}

// abort resets both sides once.
func (l *link) abort() { l.close(false) }

// reset aborts the link as a fault the proxy injects, counted in Stats
// before either side can see it.
func (l *link) reset() { l.close(true) }

func (l *link) close(fault bool) {
	l.once.Do(func() {
		if fault {
			l.p.resets.Add(1)
		}
		close(l.done)
		for _, c := range []*net.TCPConn{l.client, l.server} {
			_ = c.SetLinger(0) // close sends RST
			_ = c.Close()
		}
	})
}

// read sends what h.src sends through the link's bottleneck (see send). A
// read error other than EOF (a peer's reset) aborts the link.
func (l *link) read(h *half) {
	buf := make([]byte, chunkSize)
	var next time.Time // when the bandwidth cap is free again
	for {
		n, err := h.src.Read(buf)
		if n > 0 && !l.send(h, buf[:n], &next) {
			return
		}
		if errors.Is(err, io.EOF) {
			l.queue(h, chunk{at: time.Now(), eof: true})
			return
		}
		if err != nil {
			l.abort()
			return
		}
	}
}

// send puts data in flight in pieces, each once the link lets it through:
// not while the link is a blackhole, paced to the bandwidth cap (next is
// this direction's schedule), and client -> server after its turn on
// every uplink. Each piece is stamped with the time it left. It returns
// false if the link was aborted.
func (l *link) send(h *half, data []byte, next *time.Time) bool {
	for len(data) > 0 {
		s, ok := l.passable(*next)
		if !ok {
			return false
		}
		n := len(data)
		if s.bandwidth > 0 {
			n = min(n, int(max(s.bandwidth/50, 512))) // about 50 paced writes a second
		}
		if h.up && len(s.uplinks) > 0 {
			for _, u := range s.uplinks {
				n = min(n, int(max(u.rate/50, 512)))
			}
			if !l.crossUplinks(s, n) {
				return false
			}
			for _, u := range s.uplinks {
				u.bytes.Add(int64(n))
			}
		}
		start := time.Now()
		if s.bandwidth > 0 {
			if start.Sub(*next) > pacingSlack {
				*next = start
			}
			*next = next.Add(time.Duration(float64(n) / float64(s.bandwidth) * float64(time.Second)))
		}
		if !l.queue(h, chunk{at: start, data: append([]byte(nil), data[:n]...)}) {
			return false
		}
		data = data[n:]
	}
	return true
}

// passable blocks until the link lets data through: no blackhole and,
// under a bandwidth cap, the pacing time next has come. It re-evaluates
// whenever a setting changes, and returns the settings in force, or false
// if the link was aborted.
func (l *link) passable(next time.Time) (settings, bool) {
	return l.waitUntil(func(s settings) time.Time {
		if s.bandwidth > 0 {
			return next
		}
		return time.Time{}
	})
}

// waitUntil blocks until there is no blackhole and the time due(s), for
// the settings s in force, has passed. It re-evaluates whenever a setting
// changes, and returns the settings in force, or false if the link was
// aborted.
func (l *link) waitUntil(due func(settings) time.Time) (settings, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s, changed := l.p.current()
		var wake <-chan time.Time
		if !s.blackhole {
			wait := time.Until(due(s))
			if wait <= 0 {
				return s, true
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			wake = timer.C
		}
		select {
		case <-wake:
		case <-changed:
		case <-l.done:
			return s, false
		}
	}
}

func (l *link) queue(h *half, c chunk) bool {
	select {
	case h.q <- c:
		return true
	case <-l.done:
		return false
	}
}

// write delivers h's chunks in order, each once its time has come, and
// resets the link when ResetAfter says so.
func (l *link) write(h *half) {
	first := !h.up // the server's first bytes may be stalled
	for {
		var c chunk
		select {
		case c = <-h.q:
		case <-l.done:
			return
		}
		var hold time.Duration
		if first {
			hold, first = l.stall, false
		}
		if c.eof {
			if _, ok := l.await(c.at, hold); ok {
				_ = h.dst.CloseWrite()
			}
			return
		}
		for data := c.data; len(data) > 0; {
			s, ok := l.await(c.at, hold)
			if !ok {
				return
			}
			n := len(data)
			if h.up && s.resetAfter > 0 {
				left := s.resetAfter - l.up.Load()
				if left <= 0 {
					l.reset()
					return
				}
				n = int(min(int64(n), left))
			}
			if _, err := h.dst.Write(data[:n]); err != nil {
				l.abort()
				return
			}
			data = data[n:]
			if h.up {
				l.p.up.Add(int64(n))
				if carried := l.up.Add(int64(n)); s.resetAfter > 0 && carried >= s.resetAfter {
					l.reset()
					return
				}
			} else {
				l.p.down.Add(int64(n))
			}
		}
	}
}

// await blocks until a chunk sent at "at" may be delivered: no blackhole
// and at+hold+latency has passed. It re-evaluates whenever a setting
// changes, and returns the settings in force, or false if the link was
// aborted.
func (l *link) await(at time.Time, hold time.Duration) (settings, bool) {
	return l.waitUntil(func(s settings) time.Time { return at.Add(hold + s.latency) })
}
