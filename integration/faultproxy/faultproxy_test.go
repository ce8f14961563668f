package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/faultproxy"
)

// server is a TCP server on 127.0.0.1:0 that runs handle for each connection.
type server struct {
	addr     string
	received atomic.Int64 // bytes read by echo handlers
}

func startServer(t *testing.T, handle func(s *server, c net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(s, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// echo sends back everything it reads, then closes.
func echo(s *server, c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		s.received.Add(int64(n))
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

const banner = "SSH-2.0-OpenSSH_9.6\r\n"

// bannerThenClose sends an SSH-like banner and closes at once.
func bannerThenClose(s *server, c net.Conn) { io.WriteString(c, banner) }

func startProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back within 2 s, returning the time taken.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %q, sent %q", got, msg)
	}
	return time.Since(start)
}

// transfer writes data from one goroutine and reads the echo from another;
// it returns what came back and the time from the first write to the last byte.
func transfer(t *testing.T, c *net.TCPConn, data []byte) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(data))
	_, err := io.ReadFull(c, got)
	d := time.Since(start)
	if err != nil {
		t.Fatalf("read echo after %v: %v", d, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	return got, d
}

func random(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestStartRejectsAddressesOffLoopback(t *testing.T) {
	for _, target := range []string{"10.0.0.1:22", "example.com:22", "localhost:22", "[::1]:22", "0.0.0.0:22", "127.0.0.1"} {
		if p, err := faultproxy.Start(target); err == nil {
			p.Close()
			t.Errorf("Start(%q) succeeded; only 127.0.0.1:port targets are allowed", target)
		}
	}
}

func TestBytesPassUnchanged(t *testing.T) {
	s := startServer(t, echo)
	p := startProxy(t, s.addr)
	c := dial(t, p)
	data := random(3 << 20)
	got, _ := transfer(t, c, data)
	if !bytes.Equal(got, data) {
		t.Fatal("the echo differs from what was sent")
	}
	// A half-close travels through: the server sees EOF, closes, and the
	// client sees EOF.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after a half-close, read = %d, %v; want EOF", n, err)
	}
	st := p.Stats()
	if st.Accepted != 1 || st.BytesUp != int64(len(data)) || st.BytesDown != int64(len(data)) || st.Resets != 0 {
		t.Errorf("stats %+v, want 1 connection and %d bytes each way", st, len(data))
	}
}

func TestLatency(t *testing.T) {
	s := startServer(t, echo)
	p := startProxy(t, s.addr)
	c := dial(t, p)
	for _, oneWay := range []time.Duration{25 * time.Millisecond, 60 * time.Millisecond, 0} {
		p.SetLatency(oneWay)
		rtt := roundTrip(t, c, []byte("ping"))
		if rtt < 2*oneWay || rtt > 2*oneWay+150*time.Millisecond {
			t.Errorf("one-way latency %v: round trip took %v, want about %v", oneWay, rtt, 2*oneWay)
		}
	}
	// Pipelined: 4 MiB with a 50 ms round trip. One chunk per round trip
	// would take over 6 s.
	p.SetLatency(25 * time.Millisecond)
	data := random(4 << 20)
	got, d := transfer(t, c, data)
	if !bytes.Equal(got, data) {
		t.Fatal("the echo differs from what was sent")
	}
	if d > 3*time.Second {
		t.Errorf("4 MiB through a 50 ms round trip took %v; the link is not pipelined", d)
	}
	t.Logf("4 MiB echoed through a 50 ms round trip in %v", d)
}

func TestBandwidth(t *testing.T) {
	s := startServer(t, echo)
	for _, rate := range []int64{256 << 10, 2 << 20} {
		p := startProxy(t, s.addr)
		p.SetBandwidth(rate)
		c := dial(t, p)
		data := random(int(rate)) // about one second at the cap
		got, d := transfer(t, c, data)
		if !bytes.Equal(got, data) {
			t.Fatal("the echo differs from what was sent")
		}
		measured := float64(len(data)) / d.Seconds()
		if measured < 0.8*float64(rate) || measured > 1.2*float64(rate) {
			t.Errorf("cap %d B/s: measured %.0f B/s over %v", rate, measured, d)
		}
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

func TestResetAfter(t *testing.T) {
	s := startServer(t, echo)
	p := startProxy(t, s.addr)
	const n = 10000
	p.ResetAfter(n)
	data := random(64 << 10)
	for i := 1; i <= 2; i++ {
		before := s.received.Load()
		c := dial(t, p)
		go c.Write(data) // fails once the connection is reset
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, err := io.ReadAll(c)
		if err == nil {
			err = io.EOF // ReadAll swallows EOF
		}
		if !isReset(err) {
			t.Fatalf("connection %d: read ended with %v, want a reset", i, err)
		}
		if len(got) > n {
			t.Errorf("connection %d: client got %d bytes back, more than the %d that may pass", i, len(got), n)
		}
		// The server got the bytes before the reset, and no more.
		deadline := time.Now().Add(time.Second)
		for s.received.Load()-before < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := s.received.Load() - before; got != n {
			t.Errorf("connection %d: server received %d bytes, want %d", i, got, n)
		}
	}
	if st := p.Stats(); st.Resets != 2 || st.BytesUp != 2*n {
		t.Errorf("stats %+v, want 2 resets and %d bytes up", st, 2*n)
	}
	p.ResetAfter(0)
	c := dial(t, p)
	if got, _ := transfer(t, c, data); !bytes.Equal(got, data) {
		t.Fatal("after ResetAfter(0), the echo differs from what was sent")
	}
}

func TestBlackhole(t *testing.T) {
	echoS := startServer(t, echo)
	bannerS := startServer(t, bannerThenClose)
	pe := startProxy(t, echoS.addr)
	pb := startProxy(t, bannerS.addr)
	old := dial(t, pe)
	roundTrip(t, old, []byte("before"))
	pe.Blackhole(true)
	pb.Blackhole(true)
	fresh := dial(t, pe)   // still accepted
	closing := dial(t, pb) // its server sends a banner and closes
	for _, c := range []*net.TCPConn{old, fresh} {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range map[string]*net.TCPConn{"existing": old, "new": fresh, "closed by server": closing} {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s connection: read during blackhole = %d, %v; want a timeout", name, n, err)
		}
	}
	pe.Blackhole(false)
	pb.Blackhole(false)
	for name, c := range map[string]*net.TCPConn{"existing": old, "new": fresh} {
		c.SetReadDeadline(time.Now().Add(time.Second))
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Errorf("%s connection after blackhole: %q, %v; want the held ping", name, got, err)
		}
	}
	closing.SetReadDeadline(time.Now().Add(time.Second))
	if got, err := io.ReadAll(closing); err != nil || string(got) != banner {
		t.Errorf("after blackhole: %q, %v; want the held banner then EOF", got, err)
	}
}

func TestStallHandshake(t *testing.T) {
	s := startServer(t, bannerThenClose)
	p := startProxy(t, s.addr)
	const stall = 300 * time.Millisecond
	for _, d := range []time.Duration{stall, 0} {
		p.StallHandshake(d)
		start := time.Now()
		c := dial(t, p)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, err := io.ReadAll(c)
		took := time.Since(start)
		if err != nil || string(got) != banner {
			t.Fatalf("stall %v: read %q, %v", d, got, err)
		}
		if took < d || took > d+250*time.Millisecond {
			t.Errorf("stall %v: banner arrived after %v", d, took)
		}
	}
}

func TestDropAll(t *testing.T) {
	s := startServer(t, echo)
	p := startProxy(t, s.addr)
	cs := []*net.TCPConn{dial(t, p), dial(t, p)}
	for _, c := range cs {
		roundTrip(t, c, []byte("hello"))
	}
	p.DropAll()
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); !isReset(err) {
			t.Errorf("connection %d after DropAll: %v, want a reset", i, err)
		}
	}
	deadline := time.Now().Add(time.Second)
	for p.Stats().Active != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := p.Stats(); st.Resets != 2 || st.Active != 0 {
		t.Errorf("stats %+v, want 2 resets and no active connection", st)
	}
	roundTrip(t, dial(t, p), []byte("again"))
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	s := startServer(t, echo)
	before := runtime.NumGoroutine()
	p, err := faultproxy.Start(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.SetLatency(10 * time.Millisecond)
	p.SetBandwidth(100 << 10)
	idle := dial(t, p)
	roundTrip(t, idle, []byte("idle"))
	busy := dial(t, p)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); busy.Write(random(1 << 20)) }() // held by the cap
	go func() { defer wg.Done(); io.Copy(io.Discard, busy) }()
	p.Blackhole(true)
	hung := dial(t, p)
	hung.Write([]byte("held"))
	time.Sleep(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{idle, busy, hung} {
		c.Close()
	}
	wg.Wait()
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts after Close")
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
