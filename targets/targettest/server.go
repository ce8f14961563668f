package targettest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Server is an in-process SSH server with the SFTP subsystem, listening on
// 127.0.0.1, for tests. It accepts one user, authenticated by the generated
// key at ClientKeyPath (and any added with [WithAuthorizedKey]), and can
// drop or stall its connections to simulate faults. It is closed by the
// test's cleanup.
type Server struct {
	// Addr is the listening address, "127.0.0.1:port".
	Addr string
	// User is the only user name accepted.
	User string
	// Root is the absolute directory to use as the target root: the
	// directory given to NewSFTPServer, or one inside the in-memory
	// filesystem with WithMemFS.
	Root string
	// HostKey is the server's generated ed25519 host key.
	HostKey ssh.PublicKey
	// HostKeyLine is HostKey in authorized_keys format, without newline.
	HostKeyLine string
	// ClientKeyPath is an unencrypted OpenSSH private key the server
	// accepts for User.
	ClientKeyPath string

	mem           bool
	handlers      sftp.Handlers
	noPosixRename bool
	maxSessions   int  // 0: unlimited
	fsync         bool // answer fsync@openssh.com (fsync.go)
	breakExtra    bool // extra sessions die at their first fsync
	stallExtra    bool // extra sessions never answer fsync
	fsyncs        atomic.Int64
	authorized    [][]byte // marshalled public keys

	ln       net.Listener
	config   *ssh.ServerConfig
	stall    atomic.Pointer[chan struct{}] // non-nil while stalled; closed on resume
	received atomic.Int64
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[*serverConn]struct{}
	closed bool
}

// ServerOption configures [NewSFTPServer].
type ServerOption func(*Server)

// WithMemFS serves pkg/sftp's in-memory filesystem (sftp.InMemHandler)
// through its request server instead of the real filesystem. The root given
// to NewSFTPServer is then a path inside it, created with its parents ("/"
// when empty). Files survive reconnects for the server's lifetime. This
// filesystem refuses a plain rename onto an existing file but allows
// posix-rename, and has no statvfs for its paths.
func WithMemFS() ServerOption { return func(s *Server) { s.mem = true } }

// WithoutPosixRename makes the server hide posix-rename@openssh.com from the
// extensions it announces. pkg/sftp's servers always announce it, so the
// server rewrites its SSH_FXP_VERSION packet on the way out.
func WithoutPosixRename() ServerOption { return func(s *Server) { s.noPosixRename = true } }

// WithMaxSessions makes the server refuse a session channel while n are
// open on the same connection, as OpenSSH's "MaxSessions n" does (the
// client sees "ssh: rejected: connect failed").
func WithMaxSessions(n int) ServerOption { return func(s *Server) { s.maxSessions = n } }

// WithAuthorizedKey makes the server also accept key for User.
func WithAuthorizedKey(key ssh.PublicKey) ServerOption {
	return func(s *Server) { s.authorized = append(s.authorized, key.Marshal()) }
}

// NewSFTPServer starts a server on 127.0.0.1:0 that serves root, an
// absolute directory ("" means a new t.TempDir()). Paths sent by clients
// are those of the real filesystem (or of the in-memory one with
// [WithMemFS]); clients use Root as their target root.
func NewSFTPServer(t testing.TB, root string, opts ...ServerOption) *Server {
	t.Helper()
	s := &Server{User: "prep", conns: make(map[*serverConn]struct{})}
	for _, o := range opts {
		o(s)
	}

	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate host key: %v", err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatalf("host key signer: %v", err)
	}
	if s.HostKey, err = ssh.NewPublicKey(hostPub); err != nil {
		t.Fatalf("host public key: %v", err)
	}
	s.HostKeyLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))

	clientPub, clientKeyPath := writeKey(t, "id_ed25519")
	s.ClientKeyPath = clientKeyPath
	s.authorized = append(s.authorized, clientPub.Marshal())

	switch {
	case s.mem:
		s.Root = path.Clean("/" + root)
		s.handlers = sftp.InMemHandler()
		if s.Root != "/" {
			p := ""
			for _, el := range strings.Split(strings.TrimPrefix(s.Root, "/"), "/") {
				p += "/" + el
				if err := s.handlers.FileCmd.Filecmd(sftp.NewRequest("Mkdir", p)); err != nil && !errors.Is(err, os.ErrExist) {
					t.Fatalf("create %s in the in-memory filesystem: %v", p, err)
				}
			}
		}
	case root == "":
		s.Root = t.TempDir()
	case !filepath.IsAbs(root):
		t.Fatalf("NewSFTPServer: root %q is not absolute", root)
	default:
		s.Root = filepath.Clean(root)
	}

	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() != s.User {
				return nil, fmt.Errorf("unknown user %q", meta.User())
			}
			for _, k := range s.authorized {
				if bytes.Equal(k, key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("key not authorized")
		},
	}
	s.config.AddHostKey(hostSigner)

	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.Addr = s.ln.Addr().String()
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

// writeKey generates an ed25519 key, writes its private half to a new file
// in a temporary directory and returns the public half and the file.
func writeKey(t testing.TB, name string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("write key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	return sshPub, file
}

// KnownHostsLine returns a known_hosts line pinning the server's host key
// under its address ("[127.0.0.1]:port").
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// Connections returns how many SSH connections completed their handshake.
func (s *Server) Connections() int64 { return s.accepted.Load() }

// BytesReceived returns the SFTP payload bytes the server has read from its
// clients (requests and file data, not SSH framing).
func (s *Server) BytesReceived() int64 { return s.received.Load() }

// DropConnections closes every current connection abruptly, as a crashed
// server or a reset network would. New connections are accepted.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Stall makes the server stop reading from and writing to every connection,
// current and new (new ones are still accepted), as a hung server does;
// Stall(false) resumes them.
func (s *Server) Stall(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.stall.Load()
	switch {
	case on && cur == nil:
		ch := make(chan struct{})
		s.stall.Store(&ch)
	case !on && cur != nil:
		s.stall.Store(nil)
		close(*cur)
	}
}

// waitRunning blocks while the server is stalled, or until done is closed.
func (s *Server) waitRunning(done <-chan struct{}) error {
	ch := s.stall.Load()
	if ch == nil {
		return nil
	}
	select {
	case <-*ch:
		return nil
	case <-done:
		return net.ErrClosed
	}
}

func (s *Server) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	_ = s.ln.Close()
	s.Stall(false)
	s.DropConnections()
	s.wg.Wait()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &serverConn{Conn: nc, srv: s, done: make(chan struct{})}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			_ = c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) serveConn(nc *serverConn) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if err != nil {
		return
	}
	defer conn.Close()
	s.accepted.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs) // answers keepalives with a failure, as OpenSSH does
	}()
	var open atomic.Int64
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only session channels are served")
			continue
		}
		if s.maxSessions > 0 && open.Load() >= int64(s.maxSessions) {
			_ = nch.Reject(ssh.ConnectionFailed, "")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		extra := open.Add(1) > 1
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer open.Add(-1)
			s.serveSession(ch, creqs, extra)
		}()
	}
}

// serveSession starts the SFTP server on the first "subsystem sftp" request
// and refuses every other request.
func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request, extra bool) {
	var started bool
	for req := range reqs {
		ok := !started && req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp"
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		if ok {
			started = true
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveSFTP(ch, extra)
				_ = ch.Close()
			}()
		}
	}
	if !started {
		_ = ch.Close()
	}
}

func (s *Server) serveSFTP(ch ssh.Channel, extra bool) {
	rw := &sftpChannel{Channel: ch, received: &s.received, srv: s, filter: s.noPosixRename || s.fsync,
		broken: extra && s.breakExtra, stalled: extra && s.stallExtra}
	if s.mem {
		rs := sftp.NewRequestServer(rw, s.handlers)
		_ = rs.Serve()
		_ = rs.Close()
		return
	}
	fs, err := sftp.NewServer(rw, sftp.WithServerWorkingDirectory(s.Root))
	if err != nil {
		return
	}
	_ = fs.Serve()
	_ = fs.Close()
}

// serverConn is an accepted TCP connection that blocks while the server is
// stalled.
type serverConn struct {
	net.Conn
	srv  *Server
	done chan struct{}
	once sync.Once
}

func (c *serverConn) Read(p []byte) (int, error) {
	if err := c.srv.waitRunning(c.done); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *serverConn) Write(p []byte) (int, error) {
	if err := c.srv.waitRunning(c.done); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *serverConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// sftpChannel is the SFTP server's side of the session channel: it counts
// the bytes received, can drop posix-rename@openssh.com from (or add
// fsync@openssh.com to) the server's first packet, SSH_FXP_VERSION, and
// answers fsync@openssh.com itself (fsync.go).
type sftpChannel struct {
	ssh.Channel
	received *atomic.Int64
	srv      *Server
	broken   bool // dies at its first fsync (WithBrokenExtraSessions)
	stalled  bool // never answers fsync (WithStalledExtraSessions)

	mu      sync.Mutex
	filter  bool   // still to rewrite the version packet
	pending []byte // start of the version packet

	inPending []byte // start of a client packet not yet whole
	inOut     []byte // filtered client bytes not yet read by the server
}

func (c *sftpChannel) Read(p []byte) (int, error) {
	if !c.srv.fsync {
		n, err := c.Channel.Read(p)
		c.received.Add(int64(n))
		return n, err
	}
	buf := make([]byte, 32<<10)
	for len(c.inOut) == 0 {
		n, err := c.Channel.Read(buf)
		c.received.Add(int64(n))
		out, ferr := c.filterIn(buf[:n])
		if ferr != nil {
			_ = c.Channel.Close()
			return 0, ferr
		}
		c.inOut = append(c.inOut, out...)
		if err != nil && len(c.inOut) == 0 {
			return 0, err
		}
	}
	n := copy(p, c.inOut)
	c.inOut = c.inOut[n:]
	return n, nil
}

// writeRaw writes a packet of the channel's own (an fsync answer).
func (c *sftpChannel) writeRaw(pkt []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.Channel.Write(pkt)
	return err
}

func (c *sftpChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.filter {
		return c.Channel.Write(p)
	}
	c.pending = append(c.pending, p...)
	if len(c.pending) < 4 {
		return len(p), nil
	}
	end := 4 + int(binary.BigEndian.Uint32(c.pending))
	if len(c.pending) < end {
		return len(p), nil
	}
	version := c.pending[:end]
	if c.srv.noPosixRename {
		version = dropExtension(version, "posix-rename@openssh.com")
	}
	if c.srv.fsync {
		version = addExtension(version, "fsync@openssh.com", "1")
	}
	out := append(version, c.pending[end:]...)
	c.filter, c.pending = false, nil
	if _, err := c.Channel.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// dropExtension removes the extension name from an SSH_FXP_VERSION packet
// (uint32 length, byte 2, uint32 version, then name/data string pairs). Any
// other packet is returned unchanged.
func dropExtension(pkt []byte, name string) []byte {
	if len(pkt) < 9 || pkt[4] != fxpVersion {
		return pkt
	}
	body := append([]byte(nil), pkt[4:9]...)
	rest := pkt[9:]
	readString := func() ([]byte, bool) {
		if len(rest) < 4 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint32(rest))
		if len(rest) < 4+n {
			return nil, false
		}
		field := rest[:4+n]
		rest = rest[4+n:]
		return field, true
	}
	for len(rest) > 0 {
		ext, ok1 := readString()
		data, ok2 := readString()
		if !ok1 || !ok2 {
			return pkt
		}
		if string(ext[4:]) == name {
			continue
		}
		body = append(body, ext...)
		body = append(body, data...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

var _ io.ReadWriteCloser = (*sftpChannel)(nil)
