package main

import (
	"io"
)

// readAhead reads r in a goroutine, up to depth chunks ahead of the
// consumer, so that receiving the package overlaps with checking and
// writing it. The goroutine ends at r's EOF or error.
type readAhead struct {
	ch   chan []byte
	free chan []byte
	buf  []byte // the chunk being consumed, whole
	cur  []byte // its unread part
	err  error
	errc chan error
}

func newReadAhead(r io.Reader, chunk, depth int) *readAhead {
	ra := &readAhead{ch: make(chan []byte, depth), free: make(chan []byte, depth+2), errc: make(chan error, 1)}
	for range depth + 2 {
		ra.free <- make([]byte, chunk)
	}
	go func() {
		for {
			buf := <-ra.free
			n, err := io.ReadAtLeast(r, buf, 1)
			if n > 0 {
				ra.ch <- buf[:n]
			}
			if err != nil {
				ra.errc <- err
				close(ra.ch)
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)]
			ra.buf = nil
		}
		b, ok := <-ra.ch
		if !ok {
			if ra.err == nil {
				ra.err = <-ra.errc
			}
			return 0, ra.err
		}
		ra.buf, ra.cur = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}
