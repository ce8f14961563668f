package targettest

import (
	"encoding/binary"
	"errors"
)

// fsync@openssh.com for the in-process server. pkg/sftp's servers do not
// implement it; with [WithFsync] the server's channel answers the request
// itself (the data is already written to the filesystem the server uses,
// and durability is not what the tests check) and announces the
// extension, so that clients exercise their flush paths: sessions of their
// own, the main session, and what happens when those sessions fail.

// WithFsync makes the server announce fsync@openssh.com and answer it.
func WithFsync() ServerOption { return func(s *Server) { s.fsync = true } }

// WithBrokenExtraSessions makes every session but the first of a
// connection die at its first fsync@openssh.com request, as a server
// process that crashes under load (ProFTPD mod_sftp with a rate limit) or
// a session a proxy drops. It implies [WithFsync].
func WithBrokenExtraSessions() ServerOption {
	return func(s *Server) { s.fsync, s.breakExtra = true, true }
}

// WithStalledExtraSessions makes every session but the first of a
// connection stop answering at its first fsync@openssh.com request (it
// never answers it), as a server process stuck under a transfer rate limit.
// It implies [WithFsync].
func WithStalledExtraSessions() ServerOption {
	return func(s *Server) { s.fsync, s.stallExtra = true, true }
}

// Fsyncs counts the fsync@openssh.com requests answered.
func (s *Server) Fsyncs() int64 { return s.fsyncs.Load() }

const (
	fxpVersion  = 2
	fxpStatus   = 101
	fxpExtended = 200
)

var errSessionBroken = errors.New("session broken on purpose")

// filterIn takes what the client sent (raw, possibly several or partial
// packets) and returns what reaches the SFTP server, answering fsync
// requests itself. A non-nil error ends the session.
func (c *sftpChannel) filterIn(raw []byte) ([]byte, error) {
	c.inPending = append(c.inPending, raw...)
	var out []byte
	for len(c.inPending) >= 4 {
		n := int(binary.BigEndian.Uint32(c.inPending))
		if len(c.inPending) < 4+n {
			break
		}
		pkt := c.inPending[:4+n]
		if id, ok := fsyncRequest(pkt); ok {
			if c.broken {
				return nil, errSessionBroken
			}
			if c.stalled {
				c.inPending = c.inPending[4+n:]
				continue // never answered
			}
			c.srv.fsyncs.Add(1)
			if err := c.writeRaw(statusOK(id)); err != nil {
				return nil, err
			}
		} else {
			out = append(out, pkt...)
		}
		c.inPending = c.inPending[4+n:]
	}
	c.inPending = append([]byte(nil), c.inPending...)
	return out, nil
}

// fsyncRequest reports whether pkt is SSH_FXP_EXTENDED fsync@openssh.com,
// and its request id.
func fsyncRequest(pkt []byte) (uint32, bool) {
	const name = "fsync@openssh.com"
	if len(pkt) < 13 || pkt[4] != fxpExtended {
		return 0, false
	}
	id := binary.BigEndian.Uint32(pkt[5:])
	l := int(binary.BigEndian.Uint32(pkt[9:]))
	if len(pkt) < 13+l || string(pkt[13:13+l]) != name {
		return 0, false
	}
	return id, true
}

// statusOK is an SSH_FXP_STATUS packet with SSH_FX_OK for id.
func statusOK(id uint32) []byte {
	body := []byte{fxpStatus}
	body = binary.BigEndian.AppendUint32(body, id)
	body = binary.BigEndian.AppendUint32(body, 0) // SSH_FX_OK
	body = binary.BigEndian.AppendUint32(body, 0) // message
	body = binary.BigEndian.AppendUint32(body, 0) // language tag
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// addExtension appends an extension to an SSH_FXP_VERSION packet; any
// other packet is returned unchanged.
func addExtension(pkt []byte, name, data string) []byte {
	if len(pkt) < 9 || pkt[4] != fxpVersion {
		return pkt
	}
	body := append([]byte(nil), pkt[4:]...)
	body = binary.BigEndian.AppendUint32(body, uint32(len(name)))
	body = append(body, name...)
	body = binary.BigEndian.AppendUint32(body, uint32(len(data)))
	body = append(body, data...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}
