// Package sftpd is a small SSH server that serves a directory over SFTP on
// 127.0.0.1, for prepcast's demo: generated host key (for the client to
// pin), public key authentication, posix-rename, optional commands (exec
// sessions handled in-process), and a way to drop every connection to play
// a flaky difusor.
package sftpd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Server serves Root over SFTP to User holding the key in ClientKeyPath.
type Server struct {
	Addr          string // 127.0.0.1:port
	User          string
	Root          string
	HostKeyLine   string // authorized_keys form, for the client to pin
	ClientKeyPath string
	// Exec runs the command of an exec session with the session's streams
	// and returns its exit status; nil refuses exec sessions.
	Exec ExecFunc

	ln     net.Listener
	config *ssh.ServerConfig
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

// ExecFunc runs one command of an exec session.
type ExecFunc func(cmd string, stdin io.Reader, stdout, stderr io.Writer) int

// Start serves root on a free port of 127.0.0.1. A client key is generated
// and written to clientKeyPath (mode 0600). exec, if not nil, handles exec
// sessions (see Server.Exec).
func Start(root, clientKeyPath string, exec ExecFunc) (*Server, error) {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return nil, err
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(clientKeyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("sftpd: %w", err)
	}
	authorized, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return nil, err
	}
	s := &Server{User: "prep", Root: root, ClientKeyPath: clientKeyPath, Exec: exec, conns: map[net.Conn]struct{}{},
		HostKeyLine: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == s.User && bytes.Equal(key.Marshal(), authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	s.config.AddHostKey(hostSigner)
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("sftpd: %w", err)
	}
	s.Addr = s.ln.Addr().String()
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(nc)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				if req.Type == "exec" && s.Exec != nil && len(req.Payload) >= 4 {
					_ = req.Reply(true, nil)
					go ssh.DiscardRequests(creqs)
					code := s.Exec(string(req.Payload[4:]), ch, ch, ch.Stderr())
					_ = ch.CloseWrite()
					_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
					return
				}
				ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp"
				_ = req.Reply(ok, nil)
				if !ok {
					continue
				}
				srv, err := sftp.NewServer(ch, sftp.WithServerWorkingDirectory(s.Root))
				if err != nil {
					return
				}
				_ = srv.Serve()
				_ = srv.Close()
				return
			}
		}()
	}
}

// DropConnections closes every open connection abruptly, as a crashed
// server or a reset network would; new connections are still accepted.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Close stops the server and waits for its connections to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	s.DropConnections()
	s.wg.Wait()
	return err
}
