package faultproxy_test

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/faultproxy"
)

// sendAll pushes size bytes through each connection at once and returns
// the time until every echo is back.
func sendAll(t *testing.T, conns []*net.TCPConn, size int) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := random(size)
			got, _ := transfer(t, c, data)
			if !bytes.Equal(got, data) {
				t.Error("the echo differs from what was sent")
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func TestUplinkSharedByProxies(t *testing.T) {
	s := startServer(t, echo)
	const rate = 1_000_000
	up := faultproxy.NewUplink(rate)
	var conns []*net.TCPConn
	for range 2 {
		p := startProxy(t, s.addr)
		p.SetLatency(10 * time.Millisecond) // each proxy keeps its own latency
		p.SetUplinks(up)
		conns = append(conns, dial(t, p))
	}
	const each = 600_000
	d := sendAll(t, conns, each)
	measured := float64(2*each) / d.Seconds()
	if measured < 0.8*rate || measured > 1.2*rate {
		t.Errorf("two proxies sharing a %d B/s uplink moved %.0f B/s together over %v", rate, measured, d)
	}
	if up.Bytes() != 2*each {
		t.Errorf("uplink counted %d bytes, want %d", up.Bytes(), 2*each)
	}
}

func TestUplinkCapsOneProxyOverItsConnections(t *testing.T) {
	s := startServer(t, echo)
	const rate = 512 << 10
	p := startProxy(t, s.addr)
	p.SetUplinks(faultproxy.NewUplink(rate))
	conns := []*net.TCPConn{dial(t, p), dial(t, p)}
	const each = rate / 2
	d := sendAll(t, conns, each)
	measured := float64(2*each) / d.Seconds()
	if measured < 0.8*rate || measured > 1.2*rate {
		t.Errorf("two connections of a proxy with its own %d B/s uplink moved %.0f B/s together over %v", rate, measured, d)
	}
}
